// Command vcard inserts a virtual PIV card (package bench) into a vpcd reader and keeps it there until killed
// (SIGINT/SIGTERM remove it cleanly).
//
//	vcard --reader-addr 127.0.0.1:35963 --identity alice --dir /tmp/cardmail-pki
//
// The CA and the identities are loaded from --dir when they exist, else generated and written there, so repeated
// runs present the same certificates. The PIN is read from the CARDMAIL_VCARD_PIN environment variable when set
// (keeps it off the command line), else from --pin, else it is the bench default. pcscd must be running with the
// vpcd driver (see bench.EnsurePCSCD, or --start-pcscd).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vcard:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("reader-addr", bench.VPCDAddr0, "vpcd address (host:port) of the reader to insert the card into")
	who := flag.String("identity", "alice", "card identity: alice or bruno")
	pin := flag.String("pin", "", "card PIN (default "+bench.DefaultPIN+"; prefer $CARDMAIL_VCARD_PIN, command lines are visible to all users)")
	tries := flag.Int("tries", bench.DefaultTries, "PIN tries")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "cardmail-pki"), "directory of the test PKI files (loaded when present, else created)")
	startPCSCD := flag.Bool("start-pcscd", false, "start pcscd (detached) when it does not answer")
	flag.Parse()

	var name string
	switch *who {
	case "alice":
		name = bench.AliceName
	case "bruno":
		name = bench.BrunoName
	default:
		return fmt.Errorf("unknown --identity %q (want alice or bruno)", *who)
	}
	p := os.Getenv("CARDMAIL_VCARD_PIN")
	os.Unsetenv("CARDMAIL_VCARD_PIN")
	if p == "" {
		p = *pin
	}
	if *startPCSCD {
		if err := bench.EnsurePCSCD(); err != nil {
			return err
		}
	}
	pki, err := bench.LoadOrCreatePKI(*dir, bench.CAName)
	if err != nil {
		return err
	}
	id, err := pki.LoadOrCreateIdentity(name, bench.IdentityOptions{})
	if err != nil {
		return err
	}
	card := bench.NewCard(id, bench.CardOptions{PIN: p, Tries: *tries})
	p = ""
	if err := card.Insert(*addr); err != nil {
		return err
	}
	fmt.Printf("vcard: %q (serial %X) inserted into %s; CA %s; cert %s\n", name, id.Cert.SerialNumber, *addr,
		filepath.Join(pki.Dir, "ca.pem"), id.CertFile)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-sig:
			if err := card.Remove(); err != nil && !errors.Is(err, bench.ErrCardNotInserted) {
				return err
			}
			fmt.Printf("vcard: %v: card removed\n", s)
			return nil
		case <-tick.C:
			if !card.Inserted() {
				return errors.New("vpcd closed the connection (pcscd stopped?)")
			}
		}
	}
}
