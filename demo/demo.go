// Package demo runs CardMail with a virtual smart card in the vpcd reader and an in-process mail server, so that
// someone without a card sees the whole flow. It needs pcscd with the vpcd driver (the README's demo command installs
// and starts them); it checks for them but never starts, stops or changes the machine's PC/SC service. It writes only
// under the user's cache directory, never into real profiles.
package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/cardmail/cardmail/internal/testpki"
	"github.com/cardmail/cardmail/internal/virtualcard"
	"github.com/cardmail/cardmail/profile"
)

// Reader is the vpcd reader the demo card goes into.
const Reader = "127.0.0.1:35963"

// Env is a running demo: the PKI, the two virtual cards and the one currently inserted, the in-process mail
// server and a profile store of its own (under Dir, never the person's real profiles) holding the demo account.
type Env struct {
	Dir   string
	PKI   *testpki.PKI
	Cards [2]*virtualcard.Card
	Mail  *MailServer
	Store *profile.Store

	mu       sync.Mutex
	inserted int // index into Cards, -1 when none
}

// Start makes sure pcscd runs, loads or creates the demo PKI under the user cache directory and inserts Dr Alice
// Martin's card (PIN virtualcard.DefaultPIN). Close removes the card.
func Start() (*Env, error) {
	if err := checkPCSC(context.Background()); err != nil {
		return nil, err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return nil, fmt.Errorf("demo: no user cache directory for the demo's files: %w", err)
	}
	dir := filepath.Join(base, "cardmail-demo")
	pki, err := testpki.LoadOrCreatePKI(dir, "CardMail Demo CA")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	e := &Env{Dir: dir, PKI: pki, inserted: -1}
	for i, name := range []string{testpki.AliceName, testpki.BrunoName} {
		id, err := pki.LoadOrCreateIdentity(name, testpki.IdentityOptions{})
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		e.Cards[i] = virtualcard.NewCard(id, virtualcard.CardOptions{})
	}
	ids := []*testpki.Identity{e.Cards[0].Identity(), e.Cards[1].Identity()}
	if e.Mail, err = StartMailServer(pki, ids...); err != nil {
		return nil, err
	}
	e.Store = &profile.Store{UserDir: filepath.Join(dir, "profiles")}
	if err := e.Store.Save(DemoProfile(e.Mail, filepath.Join(dir, "ca.pem"), ids[0])); err != nil {
		e.Mail.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := e.Insert(0); err != nil {
		e.Mail.Close()
		return nil, err
	}
	return e, nil
}

// DemoProfile is the demo account of id on the demo mail server, trusting the demo CA file caFile.
func DemoProfile(ms *MailServer, caFile string, id *testpki.Identity) *profile.Profile {
	server := func(addr string) profile.Server {
		host, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		return profile.Server{Host: host, Port: n, Security: profile.Implicit}
	}
	return &profile.Profile{Version: 1, Name: "demo", Address: id.Cert.EmailAddresses[0],
		IMAP: server(ms.IMAPAddr), SMTP: server(ms.SMTPAddr), Login: profile.LoginAuto,
		TLSPolicy: profile.PolicyDefault, CAFiles: []string{caFile}}
}

// Insert puts card i (0 Alice, 1 Bruno) in the reader, removing the other one first.
func (e *Env) Insert(i int) error {
	if i < 0 || i >= len(e.Cards) {
		return fmt.Errorf("demo: no card %d", i)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inserted == i {
		return nil
	}
	if e.inserted >= 0 {
		if err := e.Cards[e.inserted].Remove(); err != nil {
			return err
		}
		e.inserted = -1
	}
	if err := e.Cards[i].Insert(Reader); err != nil && !errors.Is(err, virtualcard.ErrCardInserted) {
		return err
	}
	e.inserted = i
	return nil
}

// Remove takes the inserted card out (no-op when none).
func (e *Env) Remove() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inserted < 0 {
		return nil
	}
	err := e.Cards[e.inserted].Remove()
	e.inserted = -1
	return err
}

// Close removes the card and stops the mail server.
func (e *Env) Close() error { return errors.Join(e.Remove(), e.Mail.Close()) }
