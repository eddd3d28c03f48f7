// Command cardmail is the CardMail desktop app and its command line (see README.md).
//
// main only wires packages together: the PKCS#11 agent when the environment asks for it, a cli subcommand when
// one is named, otherwise the GUI (with the built-in virtual card for `cardmail demo`).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/cli"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/gui"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/version"
	"github.com/cardmail/cardmail/words"
)

func main() {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	if len(args) == 1 && args[0] == "--version" { // stamped by packaging/version.sh through -ldflags -X
		fmt.Println("cardmail " + version.String())
		os.Exit(cli.ExitOK)
	}
	if len(args) == 1 && args[0] == "--secure-presets" { // run by the Windows installer, as SYSTEM
		if err := profile.SecureSystemDirs(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(cli.ExitFailure)
		}
		os.Exit(cli.ExitOK)
	}
	if len(args) > 0 && args[0] != "demo" {
		os.Exit(cli.Run(ctx, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Lang: words.Detect()}, args))
	}
	os.Exit(runGUI(ctx, len(args) > 0 && args[0] == "demo"))
}

// runGUI starts the app's card and account services on live reader events and opens the window.
func runGUI(ctx context.Context, withDemo bool) int {
	opt := gui.Options{} // the GUI picks the language: CARDMAIL_LANG, the saved setting, or the system's
	store, storeErr := profile.NewStore()
	var bridgeStore *bridge.Store // nil: the user's
	if withDemo {
		d, err := demo.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return cli.ExitFailure
		}
		defer d.Close()
		opt.Demo = d
		store, storeErr = d.Store, nil // the demo's own account, never the person's real profiles
		bridgeStore = &bridge.Store{Dir: filepath.Join(d.Dir, "bridge")}
	}
	opt.PIN = &gui.PINPrompter{}
	cards := app.NewCards(app.CardsConfig{PINPrompt: opt.PIN.Prompt})
	cards.Start(ctx)
	defer cards.Close()
	opt.Cards = cards
	if storeErr == nil {
		dirs, err := app.DefaultDirs() // no per-user cache: no CRL cache, and the window says so
		opt.CacheErr = err
		accounts := app.NewAccounts(cards, dirs, 0, 0)
		accounts.BridgeStore = bridgeStore
		defer accounts.Close()
		opt.Store, opt.Mail, opt.Bridges = store, accounts, accounts
	} else {
		fmt.Fprintln(os.Stderr, storeErr) // no home directory: the window still shows the cards, without accounts
	}
	gui.Run(opt)
	return cli.ExitOK
}
