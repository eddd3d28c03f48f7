package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cardmail/cardmail/mail"
)

// sentJSON is the output of `cardmail send-test --json`.
type sentJSON struct {
	outcome
	MessageID string   `json:"message_id,omitempty"`
	From      string   `json:"from,omitempty"`
	To        []string `json:"to"`
	Date      string   `json:"date,omitempty"`
	Size      int      `json:"size"`
	Mechanism string   `json:"mechanism,omitempty"`
	// Unconfirmed: the server received the whole message but the connection failed before it answered; the message
	// may still arrive (look before sending another).
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

// runSendTest is `cardmail send-test [target flags] --to ADDR`: one small test message through the production SMTP
// connection (package mail), logged in with the card. Exit 0 sent, 1 diagnosed failure, 2 usage error.
func runSendTest(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "send-test")
	tf := addTargetFlags(fs, false)
	to := fs.String("to", "", "recipient ADDR (required)")
	if st, ok := parse(fs, args); !ok {
		return st
	}
	p, err := tf.target()
	if err != nil {
		return usageError(env, err)
	}
	switch {
	case p.SMTP.Host == "":
		return usageError(env, fmt.Errorf("%w: send-test needs --smtp HOST:PORT", errUsage))
	case *to == "" || strings.ContainsAny(*to, "\r\n<> "):
		return usageError(env, fmt.Errorf("%w: send-test needs --to ADDR", errUsage))
	case p.Address == "":
		return usageError(env, fmt.Errorf("%w: send-test needs --user ADDR (the sender)", errUsage))
	}
	r := tf.start(ctx, env)
	defer r.stop()
	var sent *mail.Sent
	err = tf.pin(ctx, r, p)
	if err == nil {
		sent, err = r.accounts.SendTestTo(ctx, p, *to)
	}
	out := sentJSON{outcome: outcomeOf(env.Lang, err), To: []string{}, Unconfirmed: errors.Is(err, mail.ErrDeliveryUnconfirmed)}
	if sent != nil {
		out.MessageID, out.From, out.Size, out.Mechanism = sent.MessageID, sent.From, sent.Size, sent.Mechanism
		out.To = append(out.To, sent.To...)
		if !sent.Date.IsZero() {
			out.Date = sent.Date.UTC().Format(time.RFC3339)
		}
	}
	if tf.asJSON {
		b, _ := json.Marshal(out)
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else if out.OK {
		fmt.Fprintf(env.Stdout, "%s\n<%s> %s -> %s (%d bytes, %s)\n", out.Message, out.MessageID, out.From,
			strings.Join(out.To, ", "), out.Size, out.Mechanism)
	} else {
		out.print(env.Stderr)
	}
	if !out.OK {
		return ExitFailure
	}
	return ExitOK
}
