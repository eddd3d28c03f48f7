package session

import (
	"slices"
	"strings"
	"testing"

	"github.com/cardmail/cardmail/token"
)

// bindings is how a PKCS#11 slot is tied to PC/SC readers; a wrong answer either leaves a card's sessions alive
// after its reader's event (a reader missed) or is harmless (a reader too many: the card is invalidated once more).
// So the rule: every reader the description may stand for, and nil (unknown: every reader concerns the card) when
// it names none.
func TestBindings(t *testing.T) {
	const long = "HID Global OMNIKEY 3x21 Smart Card Reader [OMNIKEY 3x21 Smart Card Reader] 00 00" // 80 bytes
	const long2 = "HID Global OMNIKEY 3x21 Smart Card Reader [OMNIKEY 3x21 Smart Card Reader] 01 00"
	cut := long[:slotDescriptionLen] // what OpenSC writes for both
	readers := []string{"Virtual PCD 00 00", "Virtual PCD 00 01", long, long2}
	for _, tc := range []struct {
		name, desc string
		want       []string
	}{
		{"the whole name", "Virtual PCD 00 01", []string{"Virtual PCD 00 01"}},
		{"padded with blanks to 64 bytes", "Virtual PCD 00 00" + strings.Repeat(" ", slotDescriptionLen-17), []string{"Virtual PCD 00 00"}},
		{"padded with NULs", "Virtual PCD 00 00\x00\x00\x00", []string{"Virtual PCD 00 00"}},
		{"cut at 64 bytes: both readers sharing the prefix", cut, []string{long, long2}},
		{"cut at 64 bytes and padded", cut + "  ", []string{long, long2}},
		{"a vendor's own words (Cryptolib CPS style)", "CPS Slot 0", nil},
		{"a prefix shorter than the cut is not a match", "Virtual PCD", nil},
		{"empty", "   ", nil},
	} {
		got := bindings(tc.desc, readers)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: bindings(%q) = %q, want %q", tc.name, tc.desc, got, tc.want)
		}
		c := &card{readers: got}
		// Unknown binding: every reader concerns the card (fail safe); known: only its readers.
		for _, r := range readers {
			if want := got == nil || slices.Contains(got, r); c.concerns(r) != want {
				t.Errorf("%s: card bound to %q concerns(%q) = %v", tc.name, got, r, !want)
			}
		}
	}
}

// Two cards in two readers that share a slot description are still two cards: identity comes from the token.
func TestCardKeyIsTheToken(t *testing.T) {
	desc := "HID Global OMNIKEY 3x21 Smart Card Reader [OMNIKEY 3x21 Smart..."
	a := keyOf(desc, token.TokenInfo{Serial: "00000001", Label: "PIV_II"})
	b := keyOf(desc, token.TokenInfo{Serial: "00000002", Label: "PIV_II"})
	if a == b {
		t.Fatalf("two tokens with different serials in same-named slots share the key %q", a)
	}
	if keyOf("other slot", token.TokenInfo{Serial: "00000001"}) != a {
		t.Error("the same token in another slot changed identity")
	}
	if keyOf("s1", token.TokenInfo{Label: "X"}) == keyOf("s2", token.TokenInfo{Label: "X"}) {
		t.Error("tokens without a serial in two slots share a key")
	}
}
