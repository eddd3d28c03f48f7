package cli

import (
	"context"
	"fmt"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/profile"
)

// runCheck is `cardmail check [target flags] [--json] [--repeat N --interval D]`: the diagnosis ladder against the
// IMAP server, then the SMTP server, whichever are given; with --repeat, N rounds in this process, a fresh
// connection each time. With --json every report is one JSON object on one line (contract shape); otherwise the
// text rendering. Exit 0 when every report is ok, 1 otherwise, 2 for usage errors.
func runCheck(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "check")
	tf := addTargetFlags(fs, true)
	to := fs.String("to", "", "with --smtp: also send a small test message to ADDR")
	if st, ok := parse(fs, args); !ok {
		return st
	}
	p, err := tf.target()
	if err != nil {
		return usageError(env, err)
	}
	r := tf.start(ctx, env)
	defer r.stop()
	var protocols []string
	if p.IMAP.Host != "" {
		protocols = append(protocols, diagnosis.ProtocolIMAP)
	}
	if p.SMTP.Host != "" {
		protocols = append(protocols, diagnosis.ProtocolSMTP)
	}
	status := ExitOK
	for i := 0; i < tf.repeat; i++ {
		if i > 0 && !sleepCtx(ctx, tf.interval) {
			break
		}
		for _, protocol := range protocols {
			rep := explainReport(env.Lang, checkOnce(ctx, r, tf, p, protocol, *to))
			if !rep.OK {
				status = ExitFailure
			}
			if tf.asJSON {
				fmt.Fprintf(env.Stdout, "%s\n", rep.JSON())
			} else {
				fmt.Fprintln(env.Stdout, rep.Text())
			}
			if pinRefused(rep.Code) {
				return ExitFailure // never send a refused PIN again (next target, next round): it would lock the card
			}
		}
	}
	return status
}

// pinRefused reports a code after which no later round or target may log in again with the same PIN source.
func pinRefused(c diagnosis.Code) bool {
	return c == diagnosis.PINIncorrect || c == diagnosis.PINLocked
}

// checkOnce pins the certificate the flags name and runs the diagnosis once (for SMTP, with a test message to to
// when it is set).
func checkOnce(ctx context.Context, r *runApp, tf *targetFlags, p *profile.Profile, protocol, to string) *diagnosis.Report {
	if err := tf.pin(ctx, r, p); err != nil {
		return diagnosis.Failed(diagnosis.StepClientCert, err)
	}
	if protocol == diagnosis.ProtocolSMTP && to != "" {
		return r.accounts.CheckSend(ctx, p, to, nil)
	}
	return r.accounts.Check(ctx, p, protocol, nil)
}
