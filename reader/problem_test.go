package reader

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ebfe/scard"

	"github.com/cardmail/cardmail/words"
)

func TestProblemOf(t *testing.T) {
	tests := []struct {
		err  error
		want Problem
		code string
	}{
		{nil, ProblemNone, ""},
		// Windows: the smart-card service stopped because no reader is plugged in.
		{&OpError{Op: "SCardEstablishContext", Code: 0x8010001D}, ProblemServiceNotRunning, "SCARD_E_NO_SERVICE (0x8010001D)"},
		{&OpError{Op: "SCardListReaders", Code: 0x8010001E}, ProblemServiceNotRunning, "SCARD_E_SERVICE_STOPPED (0x8010001E)"},
		{fmt.Errorf("wrapped: %w", &OpError{Op: "SCardGetStatusChange", Code: 0x80100013}), ProblemServiceNotRunning, "SCARD_F_COMM_ERROR (0x80100013)"},
		// Wine without a PC/SC bridge.
		{&OpError{Op: "SCardEstablishContext", Code: 0x80100001}, ProblemInternal, "SCARD_F_INTERNAL_ERROR (0x80100001)"},
		{&OpError{Op: "SCardListReaders", Code: 0x80100014}, ProblemInternal, "SCARD_F_UNKNOWN_ERROR (0x80100014)"},
		{&OpError{Op: "SCardListReaders", Code: 0x80100022}, ProblemInternal, "SCARD_E_UNSUPPORTED_FEATURE (0x80100022)"},
		{&OpError{Op: "SCardListReaders", Code: 0x8010002E}, ProblemNoReader, "SCARD_E_NO_READERS_AVAILABLE (0x8010002E)"},
		{&OpError{Op: "SCardGetStatusChange", Code: 0x80100017}, ProblemNoReader, "SCARD_E_READER_UNAVAILABLE (0x80100017)"},
		{&OpError{Op: "SCardGetStatusChange", Code: 0x8010000A}, ProblemNotResponding, "SCARD_E_TIMEOUT (0x8010000A)"},
		{fmt.Errorf("list: %w", context.DeadlineExceeded), ProblemNotResponding, "list: context deadline exceeded"},
		{&OpError{Op: "SCardConnect", Code: 0x8010000B}, ProblemOther, "SCARD_E_SHARING_VIOLATION (0x8010000B)"},
		{&OpError{Op: "SCardConnect", Code: 0x80101234}, ProblemOther, "0x80101234"},
		{errors.New("scard: library not found"), ProblemOther, "scard: library not found"},
		{scard.ErrNoService, ProblemServiceNotRunning, "SCARD_E_NO_SERVICE (0x8010001D)"},
	}
	for _, tc := range tests {
		if got := ProblemOf(tc.err); got != tc.want {
			t.Errorf("ProblemOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if got := Detail(tc.err); got != tc.code {
			t.Errorf("Detail(%v) = %q, want %q", tc.err, got, tc.code)
		}
	}
}

// Every problem has a sentence in each language, with the code after the words and never the code alone.
func TestProblemWords(t *testing.T) {
	err := &OpError{Op: "SCardEstablishContext", Code: 0x80100001}
	for _, p := range []Problem{ProblemServiceNotRunning, ProblemNoReader, ProblemInternal, ProblemNotResponding, ProblemOther} {
		for _, l := range []words.Lang{words.English, words.French} {
			if !words.Has(l, p.WordsKey()) {
				t.Fatalf("no words %q in %s", p.WordsKey(), l)
			}
			s := words.T(l, p.WordsKey(), map[string]any{"Code": Detail(err)})
			if len(s) < 40 {
				t.Errorf("%s %s: %q is not a sentence", l, p, s)
			}
		}
	}
	s := words.T(words.French, ProblemInternal.WordsKey(), map[string]any{"Code": Detail(err)})
	if want := "Le service de carte à puce a rencontré une erreur interne (SCARD_F_INTERNAL_ERROR (0x80100001))."; s[:len(want)] != want {
		t.Errorf("fr internal error = %q", s)
	}
	if got := (&OpError{Op: "SCardEstablishContext", Code: 0x80100001}).Error(); got != "reader: SCardEstablishContext: SCARD_F_INTERNAL_ERROR (0x80100001)" {
		t.Errorf("OpError.Error() = %q", got)
	}
}
