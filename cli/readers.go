package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/words"
)

// readerJSON is the --json shape of one reader.
type readerJSON struct {
	Name        string `json:"name"`
	CardPresent bool   `json:"card_present"`
	ATR         string `json:"atr,omitempty"`
	EventCount  uint16 `json:"event_count"`
	State       uint32 `json:"state"`
}

// readersJSON is the --json shape of `cardmail readers`. When the readers cannot be listed, Problem is a
// reader.Problem identifier, Message says it in the user's language and Code is reader.Detail (the PC/SC code).
type readersJSON struct {
	Service bool         `json:"service_running"`
	Readers []readerJSON `json:"readers"`
	Problem string       `json:"problem,omitempty"`
	Message string       `json:"message,omitempty"`
	Code    string       `json:"code,omitempty"`
}

// eventJSON is one line of `cardmail readers --watch --json`.
type eventJSON struct {
	Event      string `json:"event"`
	Reader     string `json:"reader,omitempty"`
	ATR        string `json:"atr,omitempty"`
	EventCount uint16 `json:"event_count,omitempty"`
	Time       string `json:"time"`
	Error      string `json:"error,omitempty"`
	// Problem and Message explain a service_down event (see readersJSON).
	Problem string `json:"problem,omitempty"`
	Message string `json:"message,omitempty"`
}

// readerProblem returns the user's words for a failure of reader.List or a service_down event: never a bare code.
func readerProblem(lang words.Lang, err error) string {
	return words.T(lang, reader.ProblemOf(err).WordsKey(), map[string]any{"Code": reader.Detail(err)})
}

func hexATR(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func runReaders(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "readers")
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Bool("watch", false, "stream reader and card events until interrupted")
	if st, ok := parse(fs, args); !ok {
		return st
	}
	if *watch {
		return watchReaders(ctx, env, *asJSON)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rs, err := app.NewCards(app.CardsConfig{}).Readers(lctx)
	out := readersJSON{Service: err == nil, Readers: []readerJSON{}}
	if err != nil {
		out.Problem, out.Message, out.Code = string(reader.ProblemOf(err)), readerProblem(env.Lang, err), reader.Detail(err)
		fmt.Fprintf(env.Stderr, "cardmail readers: %v\n", err) // the technical detail, for IT
	}
	for _, r := range rs {
		out.Readers = append(out.Readers, readerJSON{Name: r.Name, CardPresent: r.CardPresent, ATR: hexATR(r.ATR),
			EventCount: r.EventCount, State: r.State})
	}
	if *asJSON {
		_ = writeJSON(env.Stdout, out)
	} else {
		switch {
		case err != nil:
			fmt.Fprintln(env.Stdout, out.Message)
		case len(rs) == 0:
			fmt.Fprintln(env.Stdout, words.T(env.Lang, reader.ProblemNoReader.WordsKey(), nil))
		default:
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "READER\tCARD\tATR\tEVENTS")
			for _, r := range out.Readers {
				card := words.T(env.Lang, "reader.card_absent", nil)
				if r.CardPresent {
					card = words.T(env.Lang, "reader.card_present", nil)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Name, card, r.ATR, r.EventCount)
			}
			_ = tw.Flush()
		}
	}
	if err != nil {
		return ExitFailure
	}
	return ExitOK
}

func watchReaders(ctx context.Context, env Env, asJSON bool) int {
	enc := json.NewEncoder(env.Stdout)
	for ev := range app.NewCards(app.CardsConfig{}).WatchReaders(ctx) {
		line := eventJSON{Event: ev.Kind.String(), Reader: ev.Reader, ATR: hexATR(ev.ATR), EventCount: ev.EventCount,
			Time: ev.Time.Format(time.RFC3339Nano)}
		if ev.Err != nil {
			line.Error = ev.Err.Error()
			line.Problem, line.Message = string(reader.ProblemOf(ev.Err)), readerProblem(env.Lang, ev.Err)
		}
		if asJSON {
			if err := enc.Encode(line); err != nil {
				return ExitFailure
			}
			continue
		}
		fmt.Fprintf(env.Stdout, "%s %-14s %s %s%s\n", ev.Time.Format("15:04:05.000"), line.Event, line.Reader,
			line.ATR, map[bool]string{true: " " + line.Message}[line.Message != ""])
	}
	return ExitOK
}
