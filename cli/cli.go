// Package cli implements CardMail's subcommands (shared/spec/cli-and-diagnosis.md) on top of the same packages the
// GUI uses, so that what the CLI proves, the GUI does.
//
// Exit status: 0 success, 1 diagnosed failure, 2 usage error.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cardmail/cardmail/words"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is what a subcommand may touch of its process: streams, environment lookups and the language.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Lang           words.Lang
}

type command struct {
	name, usage string
	run         func(ctx context.Context, env Env, args []string) int
}

var commands = []command{
	{"readers", "readers [--json] [--watch]: list PC/SC readers, card presence and ATR; --watch streams events", runReaders},
	{"certs", "certs [--module PATH] [--json]: list tokens and certificates on present cards, without a PIN", runCerts},
	{"check", "check [target flags] [--json] [--repeat N --interval D] [--to ADDR]: the whole connection diagnosis", runCheck},
	{"folders", "folders [target flags] [--json] [--repeat N --interval D]: log in and list folders with counts", runFolders},
	{"send-test", "send-test [target flags] --to ADDR: send a small test message by SMTP", runSendTest},
	{"bridge", "bridge [target flags] [--listen-imap ADDR] [--listen-smtp ADDR] [--json]: serve the account to local mail clients through the card", runBridge},
}

// Run runs the subcommand args[0] with args[1:] and returns the exit status. ctx ends long-running commands (such
// as readers --watch): main cancels it on SIGINT/SIGTERM.
func Run(ctx context.Context, env Env, args []string) int {
	if len(args) == 0 {
		usage(env.Stderr)
		return ExitUsage
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	usage(env.Stderr)
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return ExitOK
	}
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cardmail [command] [flags]   (no command: the desktop app)")
	for _, c := range commands {
		fmt.Fprintln(w, "  cardmail "+c.usage)
	}
}

// newFlags returns a flag set that reports errors to env.Stderr and does not exit.
func newFlags(env Env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("cardmail "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parse parses args and maps errors to an exit status; ok is false when the caller must return status.
func parse(fs *flag.FlagSet, args []string) (status int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return ExitUsage, false
	}
	return 0, true
}

// fail reports err with its diagnosis code in plain words (or as JSON) and returns ExitFailure.
func fail(env Env, asJSON bool, err error) int {
	o := outcomeOf(env.Lang, err)
	if asJSON {
		_ = json.NewEncoder(env.Stdout).Encode(o)
	} else {
		o.print(env.Stderr)
	}
	return ExitFailure
}

func writeJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}
