package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// TestCardHealthListing: the listing carries the token's PIN flags read without a PIN (OpenSC 0.23 asks the card
// with a VERIFY status query at each C_GetTokenInfo) and the manager names the module; a refused PIN is an event,
// after which the listing reads the flags again (the card is now locked) without a card event.
func TestCardHealthListing(t *testing.T) {
	f := newFixture(t, nil)
	// A card with one PIN try left (the virtual card's counter starts at 1).
	f.b.Cards[0] = bench.NewCard(f.b.Alice, bench.CardOptions{Tries: 1})
	f.insert(t, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	certs, err := f.m.Certificates(ctx)
	if err != nil || len(certs) == 0 {
		t.Fatalf("certificates: %d, %v", len(certs), err)
	}
	ti := certs[0].Token
	if !ti.UserPINFinalTry || ti.UserPINLocked || ti.PINTriesLeft() != 1 || ti.Label == "" {
		t.Fatalf("token info of a card with one try left: %+v", ti)
	}
	mi, ok := f.m.ModuleInfo()
	if !ok || mi.Path != f.b.OpenSC || mi.Manufacturer != "OpenSC Project" || !strings.HasPrefix(mi.Version, "0.") {
		t.Fatalf("module info %+v (%v)", mi, ok)
	}

	// The wrong PIN: the login fails, the manager says the PIN was refused, and the next listing says "locked".
	f.pin.Store("999999")
	f.drain()
	_, err = f.m.Identity(ctx, session.Selection{})
	var pe *token.PINError
	if !errors.As(err, &pe) {
		t.Fatalf("login with a wrong PIN: %v", err)
	}
	f.waitEvent(t, session.PINRefused, f.b.Readers[0])
	if got := f.b.Cards[0].TriesLeft(); got != 0 {
		t.Fatalf("the card has %d tries left, want 0", got)
	}
	certs, err = f.m.Certificates(ctx)
	if err != nil || len(certs) == 0 {
		t.Fatalf("certificates after the wrong PIN: %v", err)
	}
	if ti := certs[0].Token; !ti.UserPINLocked || ti.PINTriesLeft() != 0 || ti.PINState() != token.PINStateLocked {
		t.Fatalf("token info after the last try: %+v", ti)
	}
	if c := f.b.Cards[0].Counters(); c.Verify != 1 {
		t.Fatalf("the card saw %d VERIFY with a PIN, want exactly the one wrong PIN (status queries carry none)", c.Verify)
	}
}
