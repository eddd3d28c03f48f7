package bench

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/cardmail/cardmail/internal/testpki"
)

// WaitTimeout bounds InsertWait and RemoveWait.
const WaitTimeout = 5 * time.Second

// Bench is the whole environment for one test; see Start. Its methods must be called from the test's goroutine
// (they call t.Fatal); the cards themselves are safe for concurrent use.
type Bench struct {
	PKI          *PKI
	Alice, Bruno *Identity
	Cards        [2]*Card  // Cards[0] is Alice's, Cards[1] Bruno's
	Readers      [2]string // reader names: ReaderNames(Options.FriendlyName), "Virtual PCD 00 00" and "… 00 01" by default
	Addrs        [2]string // "127.0.0.1:35963", "127.0.0.1:35964"
	OpenSC       string    // path of opensc-pkcs11.so

	mu   sync.Mutex
	slot [2]int // card index in each slot, -1 when empty
}

// Start prepares the bench for t: it takes the machine-wide Lock, makes sure pcscd runs with the vpcd driver
// (EnsurePCSCD), checks that OpenSC's PKCS#11 module is installed, makes a PKI in t.TempDir() with the identities
// "Dr Alice Martin" and "Dr Bruno Petit" and one card for each (default PIN, tries and ATR), and registers cleanup:
// (the three RSA keys are generated once per process and reused; the certificates are new for every Start)
// cards removed (waiting until pcscd sees the readers empty), then the lock released. No card is inserted.
// A missing component fails t with an install hint.
func Start(t testing.TB) *Bench {
	t.Helper()
	return StartOptions(t, Options{})
}

// Options make the bench less kind, like the world (real-world.md).
type Options struct {
	// FriendlyName names the readers: ReaderNames(FriendlyName). "" means DefaultFriendlyName (17-byte names);
	// LongFriendlyName gives the 80-byte names of a common real reader, cut to the same 64 bytes in both PKCS#11 slot
	// descriptions.
	FriendlyName string
	// Card configures both cards (PIN, tries, delays; RealCard gives a real card's timings). ATR and Log apply too.
	Card CardOptions
}

// StartOptions is Start with opt. With another FriendlyName than the running pcscd's, pcscd is restarted with a
// reader configuration of its own (EnsurePCSCDNamed); the next Start brings the default names back.
func StartOptions(t testing.TB, opt Options) *Bench {
	t.Helper()
	Lock(t)
	friendly := opt.FriendlyName
	if friendly == "" {
		friendly = DefaultFriendlyName
	}
	if err := EnsurePCSCDNamed(friendly); err != nil {
		t.Fatalf("bench: %v", err)
	}
	for _, name := range ReaderNames(friendly) {
		// A card a previous lock holder removed may still be seen for one pcscd poll (400 ms): start empty.
		if err := WaitCard(name, false, WaitTimeout); err != nil {
			t.Fatalf("bench: a card is still in %q at the start: %v", name, err)
		}
	}
	if friendly != DefaultFriendlyName {
		// Leave the machine's pcscd as other tests (and other checkouts' benches) expect it, before the lock goes.
		t.Cleanup(func() {
			if err := EnsurePCSCDNamed(DefaultFriendlyName); err != nil {
				t.Errorf("bench cleanup: %v", err)
			}
		})
	}
	opensc, err := OpenSCModule()
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	keys, err := startKeys()
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	pki, err := testpki.NewPKIWithKey(t.TempDir(), CAName, keys[0])
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	alice, err := pki.IdentityWithKey(AliceName, IdentityOptions{}, keys[1])
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	bruno, err := pki.IdentityWithKey(BrunoName, IdentityOptions{}, keys[2])
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	b := &Bench{
		PKI: pki, Alice: alice, Bruno: bruno,
		Cards:   [2]*Card{NewCard(alice, opt.Card), NewCard(bruno, opt.Card)},
		Readers: ReaderNames(friendly),
		Addrs:   [2]string{VPCDAddr0, VPCDAddr1},
		OpenSC:  opensc,
		slot:    [2]int{-1, -1},
	}
	t.Cleanup(func() {
		for slot := range b.slot {
			if card := b.slotCard(slot); card >= 0 {
				_ = b.Cards[card].Remove()
				b.setSlot(slot, -1)
				if err := WaitCard(b.Readers[slot], false, WaitTimeout); err != nil {
					t.Errorf("bench cleanup: %v", err)
				}
			}
		}
		for _, c := range b.Cards {
			_ = c.Remove()
		}
	})
	return b
}

// startKeys are the CA, Alice and Bruno keys, generated once per process: RSA-2048 generation is the slow part of
// Start (~1 s a key on a small machine). Every Start still issues fresh certificates (new serials, new card GUIDs).
var startKeys = sync.OnceValues(func() ([3]*rsa.PrivateKey, error) {
	var keys [3]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, KeyBits)
		if err != nil {
			return keys, fmt.Errorf("generate key: %w", err)
		}
		keys[i] = k
	}
	return keys, nil
})

func (b *Bench) slotCard(slot int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slot[slot]
}

func (b *Bench) setSlot(slot, card int) {
	b.mu.Lock()
	b.slot[slot] = card
	b.mu.Unlock()
}

func checkIndex(t testing.TB, what string, i int) {
	t.Helper()
	if i < 0 || i > 1 {
		t.Fatalf("bench: %s index %d out of range 0..1", what, i)
	}
}

// InsertWait inserts Cards[card] into reader slot and waits until pcscd reports the card present (WaitTimeout).
// It first waits until pcscd reports the slot empty, so that a previous card's presence is never mistaken for this
// one's. It fails t if another card is in the slot, if the card is in another slot, or on timeout.
func (b *Bench) InsertWait(t testing.TB, card, slot int) {
	t.Helper()
	checkIndex(t, "card", card)
	checkIndex(t, "slot", slot)
	for s := range b.slot {
		if c := b.slotCard(s); c == card && b.Cards[card].Inserted() {
			if s == slot {
				t.Fatalf("bench: card %d (%s) already in slot %d", card, b.Cards[card].Identity().Name, slot)
			}
			t.Fatalf("bench: card %d (%s) is in slot %d, not %d", card, b.Cards[card].Identity().Name, s, slot)
		}
	}
	if c := b.slotCard(slot); c >= 0 && b.Cards[c].Inserted() {
		t.Fatalf("bench: slot %d holds card %d; use Swap or RemoveWait first", slot, c)
	}
	if err := WaitCard(b.Readers[slot], false, WaitTimeout); err != nil {
		t.Fatalf("bench: before insert: %v", err)
	}
	if err := b.Cards[card].Insert(b.Addrs[slot]); err != nil {
		t.Fatalf("bench: %v", err)
	}
	b.setSlot(slot, card)
	if err := WaitCard(b.Readers[slot], true, WaitTimeout); err != nil {
		t.Fatalf("bench: after insert: %v", err)
	}
}

// RemoveWait removes whatever bench card is in reader slot (nothing if empty) and waits until pcscd reports the
// slot empty (WaitTimeout), failing t on timeout.
func (b *Bench) RemoveWait(t testing.TB, slot int) {
	t.Helper()
	checkIndex(t, "slot", slot)
	if c := b.slotCard(slot); c >= 0 {
		if err := b.Cards[c].Remove(); err != nil && !errors.Is(err, ErrCardNotInserted) {
			t.Fatalf("bench: %v", err)
		}
		b.setSlot(slot, -1)
	}
	if err := WaitCard(b.Readers[slot], false, WaitTimeout); err != nil {
		t.Fatalf("bench: after remove: %v", err)
	}
}

// Swap removes the card in slot, waits until pcscd sees the slot empty, inserts Cards[card] and waits until it is
// present.
func (b *Bench) Swap(t testing.TB, slot, card int) {
	t.Helper()
	b.RemoveWait(t, slot)
	b.InsertWait(t, card, slot)
}

// WaitError reports that a reader did not reach the wanted state in time.
type WaitError struct {
	Reader  string
	Present bool // the state waited for
	State   scard.StateFlag
	Err     error
}

func (e *WaitError) Error() string {
	want := "absent"
	if e.Present {
		want = "present"
	}
	return fmt.Sprintf("bench: reader %q: card not %s (state %#x): %v", e.Reader, want, uint32(e.State), e.Err)
}
func (e *WaitError) Unwrap() error { return e.Err }

// WaitCard waits until pcscd reports a card present (present=true) or absent in reader, up to timeout, using
// SCardGetStatusChange on its own context. Errors: *WaitError (wrapping scard errors, e.g. scard.ErrTimeout).
func WaitCard(reader string, present bool, timeout time.Duration) error {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return &WaitError{Reader: reader, Present: present, Err: err}
	}
	defer ctx.Release()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(timeout)
	for {
		remaining := time.Until(deadline)
		if remaining < 0 {
			remaining = 0
		}
		err := ctx.GetStatusChange(rs, remaining)
		if err != nil && !(errors.Is(err, scard.ErrTimeout) && rs[0].CurrentState != scard.StateUnaware) {
			return &WaitError{Reader: reader, Present: present, State: rs[0].EventState, Err: err}
		}
		st := rs[0].EventState & 0xFFFF // the upper 16 bits are the event counter
		if err == nil {
			if st&(scard.StateUnknown|scard.StateIgnore) != 0 {
				return &WaitError{Reader: reader, Present: present, State: st, Err: errors.New("reader unknown to pcscd")}
			}
			if (st&scard.StatePresent != 0) == present && (!present || st&scard.StateMute == 0) {
				return nil
			}
			rs[0].CurrentState = rs[0].EventState
		}
		if time.Now().After(deadline) {
			return &WaitError{Reader: reader, Present: present, State: st, Err: scard.ErrTimeout}
		}
	}
}
