package reader

import (
	"bytes"
	"context"

	"github.com/ebfe/scard"
)

// Reader is the state of one PC/SC reader at the moment it was read.
type Reader struct {
	Name        string // the PC/SC reader name, e.g. "Virtual PCD 00 00"; unique among the readers of one service
	CardPresent bool   // a card is in the reader (SCARD_STATE_PRESENT), powered or not
	ATR         []byte // the card's answer to reset; nil when no card, or when the card is mute
	// EventCount is the reader's event counter (upper 16 bits of the PC/SC event state). pcsc-lite increments it
	// on every card insertion and removal, including a removal and reinsertion too fast to be seen as absent.
	EventCount uint16
	State      uint32 // the PC/SC state flags (SCARD_STATE_*), masked with 0xFFFF (no counter, no CHANGED bit)
	Exclusive  bool   // another application holds the card exclusively (SCARD_STATE_EXCLUSIVE)
	Mute       bool   // the card does not answer to reset (SCARD_STATE_MUTE)
}

// sameCard reports whether a and b show the same card session: same presence, same counter, same ATR.
func sameCard(a, b Reader) bool {
	return a.CardPresent == b.CardPresent && a.EventCount == b.EventCount && bytes.Equal(a.ATR, b.ATR)
}

// readerFromState builds a Reader from a PC/SC event state. ok is false for a reader the service no longer knows
// (SCARD_STATE_UNKNOWN or SCARD_STATE_IGNORE).
func readerFromState(name string, ev scard.StateFlag, atr []byte) (r Reader, ok bool) {
	flags := uint32(ev) & 0xFFFF
	if flags&uint32(scard.StateUnknown|scard.StateIgnore) != 0 {
		return Reader{}, false
	}
	r = Reader{
		Name:        name,
		CardPresent: flags&uint32(scard.StatePresent) != 0,
		EventCount:  uint16(uint32(ev) >> 16),
		State:       flags &^ uint32(scard.StateChanged),
		Exclusive:   flags&uint32(scard.StateExclusive) != 0,
		Mute:        flags&uint32(scard.StateMute) != 0,
	}
	if r.CardPresent && len(atr) > 0 {
		r.ATR = bytes.Clone(atr)
	}
	return r, true
}

// List returns the readers of the PC/SC service and their card state, in the service's order.
//
// Each call establishes and releases its own PC/SC context, so List is safe for concurrent use and may be called while
// a Watch runs. With no readers it returns an empty slice and a nil error. A reader that disappears while it is being
// listed is left out. When the service cannot be reached the error matches ErrServiceNotRunning (errors.Is); other
// PC/SC failures are *OpError. If ctx ends first, List returns ctx.Err().
func List(ctx context.Context) ([]Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, opError("SCardEstablishContext", "", err)
	}
	defer sc.Release() //nolint:errcheck // nothing to do about a failed release
	stop := context.AfterFunc(ctx, func() { _ = sc.Cancel() })
	defer stop()

	names, err := listReaders(sc)
	if err != nil {
		return nil, err
	}
	readers, err := readStates(sc, names)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	return readers, err
}

// listReaders returns the reader names, or an empty slice when the service has none.
func listReaders(sc *scard.Context) ([]string, error) {
	names, err := sc.ListReaders()
	if err != nil {
		if isCode(err, scard.ErrNoReadersAvailable) {
			return []string{}, nil
		}
		return nil, opError("SCardListReaders", "", err)
	}
	return names, nil
}

// readStates reads the current state of the named readers without blocking (all states passed as
// SCARD_STATE_UNAWARE, timeout 0). Readers that vanished since they were listed are left out.
func readStates(sc *scard.Context, names []string) ([]Reader, error) {
	out := make([]Reader, 0, len(names))
	if len(names) == 0 {
		return out, nil
	}
	rs := make([]scard.ReaderState, len(names))
	for i, n := range names {
		rs[i] = scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware}
	}
	err := sc.GetStatusChange(rs, 0)
	if err == nil {
		for _, s := range rs {
			if r, ok := readerFromState(s.Reader, s.EventState, s.Atr); ok {
				out = append(out, r)
			}
		}
		return out, nil
	}
	if !vanishedReader(err) {
		return nil, opError("SCardGetStatusChange", "", err)
	}
	// One of the readers went away between SCardListReaders and now: read them one by one, skipping the gone ones.
	for _, n := range names {
		one := []scard.ReaderState{{Reader: n, CurrentState: scard.StateUnaware}}
		if err := sc.GetStatusChange(one, 0); err != nil {
			if vanishedReader(err) {
				continue
			}
			return nil, opError("SCardGetStatusChange", n, err)
		}
		if r, ok := readerFromState(n, one[0].EventState, one[0].Atr); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// vanishedReader reports whether err means that a reader named in the call is no longer known.
func vanishedReader(err error) bool {
	return isCode(err, scard.ErrUnknownReader) || isCode(err, scard.ErrReaderUnavailable)
}
