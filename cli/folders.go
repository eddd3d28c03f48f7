package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// folderJSON is one folder in `cardmail folders --json`.
type folderJSON struct {
	Name       string   `json:"name"`
	Delimiter  string   `json:"delimiter"`
	Attributes []string `json:"attributes"`
	Messages   uint32   `json:"messages"`
	Unseen     uint32   `json:"unseen"`
	NoSelect   bool     `json:"noselect"`
}

// foldersJSON is one line of `cardmail folders --json`.
type foldersJSON struct {
	outcome
	Folders []folderJSON `json:"folders"`
}

// runFolders is `cardmail folders [target flags] [--json] [--repeat N --interval D]`: the production IMAP connection
// (package mail) logs in with the card and lists folders with message and unseen counts. Failures are classified
// with the facts the connection's error carries (diagnosis.Classify). Exit 0, 1 on any failed round, 2 for usage.
func runFolders(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "folders")
	tf := addTargetFlags(fs, true)
	if st, ok := parse(fs, args); !ok {
		return st
	}
	p, err := tf.target()
	if err != nil {
		return usageError(env, err)
	}
	if p.IMAP.Host == "" {
		return usageError(env, fmt.Errorf("%w: folders needs --imap HOST:PORT", errUsage))
	}
	r := tf.start(ctx, env)
	defer r.stop()
	status := ExitOK
	for i := 0; i < tf.repeat; i++ {
		if i > 0 && !sleepCtx(ctx, tf.interval) {
			break
		}
		out := foldersOnce(ctx, r, tf, p, env.Lang)
		if !out.OK {
			status = ExitFailure
		}
		if tf.asJSON {
			b, _ := json.Marshal(out)
			fmt.Fprintf(env.Stdout, "%s\n", b)
		} else if !out.OK {
			out.print(env.Stderr)
		}
		if pinRefused(out.Code) {
			break // never send a refused PIN again: a later round would lock the card
		}
		if tf.asJSON || !out.OK {
			continue
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		for _, f := range out.Folders {
			if f.NoSelect {
				fmt.Fprintf(tw, "%s\t-\t-\n", f.Name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\n", f.Name, f.Messages, f.Unseen)
		}
		_ = tw.Flush()
	}
	return status
}

func foldersOnce(ctx context.Context, r *runApp, tf *targetFlags, p *profile.Profile, lang words.Lang) foldersJSON {
	var folders []mail.Folder
	err := tf.pin(ctx, r, p)
	if err == nil {
		folders, err = r.accounts.FoldersOnce(ctx, p)
	}
	out := foldersJSON{outcome: outcomeOf(lang, err), Folders: []folderJSON{}}
	for _, f := range folders {
		delim := ""
		if f.Delim != 0 {
			delim = string(f.Delim)
		}
		out.Folders = append(out.Folders, folderJSON{Name: f.Name, Delimiter: delim, Attributes: orEmpty(f.Attrs),
			Messages: f.Messages, Unseen: f.Unseen, NoSelect: f.NoSelect})
	}
	return out
}
