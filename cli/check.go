package cli

import (
	"context"
	"fmt"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
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
	acct, err := tf.account(env)
	if err != nil {
		return usageError(env, err)
	}
	c := startCards(ctx, env, tf.module)
	defer c.stop()
	var targets []diagnosis.Target
	if acct.IMAP.Host != "" {
		targets = append(targets, diagnosis.Target{Protocol: diagnosis.ProtocolIMAP})
	}
	if acct.SMTP.Host != "" {
		targets = append(targets, diagnosis.Target{Protocol: diagnosis.ProtocolSMTP, SendTo: *to})
	}
	status := ExitOK
	for i := 0; i < tf.repeat; i++ {
		if i > 0 && !sleepCtx(ctx, tf.interval) {
			break
		}
		for _, t := range targets {
			rep := explainReport(env.Lang, checkOnce(ctx, c, tf, acct, t))
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

// checkOnce resolves the certificate selection and runs the ladder once.
func checkOnce(ctx context.Context, c *cards, tf *targetFlags, acct mail.Account, t diagnosis.Target) *diagnosis.Report {
	sel, err := tf.selection(ctx, c.m, acct.Cert)
	if err != nil {
		return diagnosis.Failed(diagnosis.StepClientCert, err)
	}
	acct.Cert = sel
	t.Account, t.Timeout = acct, tf.timeout
	return diagnosis.Run(ctx, c.m, t)
}
