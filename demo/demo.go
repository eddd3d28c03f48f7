// Package demo runs CardMail against the built-in bench: a virtual smart card in the vpcd reader, so that someone
// without a card sees the whole flow. It needs pcscd with the vpcd driver (the README's demo command installs and
// starts them) and writes only under the user's cache directory, never into real profiles.
package demo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cardmail/cardmail/bench"
)

// Reader is the vpcd reader the demo card goes into.
const Reader = "127.0.0.1:35963"

// Env is a running demo: the PKI, the two virtual cards and the one currently inserted.
type Env struct {
	Dir   string
	PKI   *bench.PKI
	Cards [2]*bench.Card

	mu       sync.Mutex
	inserted int // index into Cards, -1 when none
}

// Start makes sure pcscd runs, loads or creates the demo PKI under the user cache directory and inserts Dr Alice
// Martin's card (PIN bench.DefaultPIN). Close removes the card.
func Start() (*Env, error) {
	if err := bench.EnsurePCSCD(); err != nil {
		return nil, fmt.Errorf("demo: pc/sc service with the vpcd reader: %w (run `make demo`, which installs and starts it)", err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "cardmail-demo")
	pki, err := bench.LoadOrCreatePKI(dir, "CardMail Demo CA")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	e := &Env{Dir: dir, PKI: pki, inserted: -1}
	for i, name := range []string{bench.AliceName, bench.BrunoName} {
		id, err := pki.LoadOrCreateIdentity(name, bench.IdentityOptions{})
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		e.Cards[i] = bench.NewCard(id, bench.CardOptions{})
	}
	if err := e.Insert(0); err != nil {
		return nil, err
	}
	return e, nil
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
	if err := e.Cards[i].Insert(Reader); err != nil && !errors.Is(err, bench.ErrCardInserted) {
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

// Close removes the card.
func (e *Env) Close() error { return e.Remove() }
