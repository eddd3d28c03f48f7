package reader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"
)

var (
	atrPIV   = []byte{0x3B, 0x8B, 0x80, 0x01, 0x80, 0xF9, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0xC8}
	atrOther = []byte{0x3B, 0x02, 0x14, 0x50}
)

const (
	rd0 = "Virtual PCD 00 00"
	rd1 = "Virtual PCD 00 01"
)

func empty(name string, count uint16) Reader {
	return Reader{Name: name, EventCount: count, State: uint32(scard.StateEmpty)}
}

func card(name string, count uint16, atr []byte) Reader {
	return Reader{Name: name, CardPresent: true, ATR: atr, EventCount: count, State: uint32(scard.StatePresent)}
}

// step is one observation given to the tracker: readers (service up) or err (service down).
type step struct {
	readers []Reader
	err     error
}

// ev is the part of an Event the tables compare.
type ev struct {
	kind    EventKind
	reader  string
	atr     []byte
	count   uint16
	withErr bool
}

func (e ev) String() string {
	return fmt.Sprintf("%v %q atr=%X count=%d err=%v", e.kind, e.reader, e.atr, e.count, e.withErr)
}

var errDown = &OpError{Op: "SCardGetStatusChange", Code: uint32(scard.ErrCommError)}

func TestTrackerSequences(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  [][]ev // events per step
	}{
		{
			name:  "initial state: readers then cards, in name order",
			steps: []step{{readers: []Reader{card(rd1, 3, atrPIV), empty(rd0, 0)}}},
			want: [][]ev{{
				{kind: ReaderAdded, reader: rd0},
				{kind: ReaderAdded, reader: rd1, count: 3},
				{kind: CardInserted, reader: rd1, atr: atrPIV, count: 3},
			}},
		},
		{
			name:  "no readers: no events",
			steps: []step{{readers: []Reader{}}, {readers: nil}},
			want:  [][]ev{nil, nil},
		},
		{
			name: "insert then remove",
			steps: []step{
				{readers: []Reader{empty(rd0, 0)}},
				{readers: []Reader{card(rd0, 1, atrPIV)}},
				{readers: []Reader{empty(rd0, 2)}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0}},
				{{kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}},
				{{kind: CardRemoved, reader: rd0, atr: atrPIV, count: 2}},
			},
		},
		{
			name: "unchanged state and flag-only changes give nothing",
			steps: []step{
				{readers: []Reader{card(rd0, 1, atrPIV)}},
				{readers: []Reader{card(rd0, 1, atrPIV)}},
				{readers: []Reader{{Name: rd0, CardPresent: true, ATR: atrPIV, EventCount: 1, Exclusive: true,
					State: uint32(scard.StatePresent | scard.StateExclusive | scard.StateInuse)}}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}},
				nil,
				nil,
			},
		},
		{
			name: "counter changed, same ATR (remove+reinsert between two polls): card_reset",
			steps: []step{
				{readers: []Reader{card(rd0, 1, atrPIV)}},
				{readers: []Reader{card(rd0, 3, atrPIV)}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}},
				{{kind: CardReset, reader: rd0, atr: atrPIV, count: 3}},
			},
		},
		{
			name: "counter and ATR changed (fast swap to another card model): removed then inserted",
			steps: []step{
				{readers: []Reader{card(rd0, 1, atrPIV)}},
				{readers: []Reader{card(rd0, 3, atrOther)}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}},
				{{kind: CardRemoved, reader: rd0, atr: atrPIV, count: 3}, {kind: CardInserted, reader: rd0, atr: atrOther, count: 3}},
			},
		},
		{
			name: "ATR changed, same counter (warm reset): card_reset",
			steps: []step{
				{readers: []Reader{card(rd0, 1, atrPIV)}},
				{readers: []Reader{card(rd0, 1, atrOther)}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}},
				{{kind: CardReset, reader: rd0, atr: atrOther, count: 1}},
			},
		},
		{
			name: "insert+remove between two polls while absent: nothing to report",
			steps: []step{
				{readers: []Reader{empty(rd0, 4)}},
				{readers: []Reader{empty(rd0, 6)}},
			},
			want: [][]ev{{{kind: ReaderAdded, reader: rd0, count: 4}}, nil},
		},
		{
			name: "reader vanished with its card, another appeared with a card",
			steps: []step{
				{readers: []Reader{card(rd0, 1, atrPIV), empty(rd1, 0)}},
				{readers: []Reader{card(rd1, 1, atrOther)}},
				{readers: []Reader{}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}, {kind: ReaderAdded, reader: rd1}},
				{{kind: CardRemoved, reader: rd0, atr: atrPIV, count: 1}, {kind: ReaderRemoved, reader: rd0, count: 1}, {kind: CardInserted, reader: rd1, atr: atrOther, count: 1}},
				{{kind: CardRemoved, reader: rd1, atr: atrOther, count: 1}, {kind: ReaderRemoved, reader: rd1, count: 1}},
			},
		},
		{
			name: "mute card: present without ATR, then a reset gives an ATR",
			steps: []step{
				{readers: []Reader{{Name: rd0, CardPresent: true, Mute: true, EventCount: 1, State: uint32(scard.StatePresent | scard.StateMute)}}},
				{readers: []Reader{card(rd0, 1, atrPIV)}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, count: 1}},
				{{kind: CardReset, reader: rd0, atr: atrPIV, count: 1}},
			},
		},
		{
			name: "service down then up: down once, removals, up, new state",
			steps: []step{
				{readers: []Reader{card(rd0, 1, atrPIV), empty(rd1, 0)}},
				{err: errDown},
				{err: errDown},
				{err: &OpError{Op: "SCardEstablishContext", Code: uint32(scard.ErrNoService)}},
				{readers: []Reader{card(rd0, 1, atrPIV), empty(rd1, 0)}},
				{readers: []Reader{card(rd0, 1, atrPIV), empty(rd1, 0)}},
			},
			want: [][]ev{
				{{kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}, {kind: ReaderAdded, reader: rd1}},
				{{kind: ServiceDown, withErr: true}, {kind: CardRemoved, reader: rd0, atr: atrPIV, count: 1}, {kind: ReaderRemoved, reader: rd0, count: 1}, {kind: ReaderRemoved, reader: rd1}},
				nil,
				nil,
				{{kind: ServiceUp}, {kind: ReaderAdded, reader: rd0, count: 1}, {kind: CardInserted, reader: rd0, atr: atrPIV, count: 1}, {kind: ReaderAdded, reader: rd1}},
				nil,
			},
		},
		{
			name: "service down at start: service_down only, then up with state",
			steps: []step{
				{err: errDown},
				{readers: []Reader{}},
				{readers: []Reader{empty(rd0, 0)}},
			},
			want: [][]ev{
				{{kind: ServiceDown, withErr: true}},
				{{kind: ServiceUp}},
				{{kind: ReaderAdded, reader: rd0}},
			},
		},
		{
			name:  "service up at start: no service_up",
			steps: []step{{readers: []Reader{}}, {err: errDown}, {readers: []Reader{}}},
			want:  [][]ev{nil, {{kind: ServiceDown, withErr: true}}, {{kind: ServiceUp}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.steps) != len(tc.want) {
				t.Fatalf("bad table: %d steps, %d wants", len(tc.steps), len(tc.want))
			}
			var tr tracker
			now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
			for i, s := range tc.steps {
				var got []Event
				if s.err != nil {
					got = tr.fail(s.err, now)
				} else {
					got = tr.observe(s.readers, now)
				}
				var gotEv []ev
				for _, e := range got {
					if !e.Time.Equal(now) {
						t.Errorf("step %d: event %v has time %v, want %v", i, e.Kind, e.Time, now)
					}
					if e.Kind == ServiceDown && !errors.Is(e.Err, s.err) {
						t.Errorf("step %d: service_down Err = %v, want %v", i, e.Err, s.err)
					}
					gotEv = append(gotEv, ev{kind: e.Kind, reader: e.Reader, atr: e.ATR, count: e.EventCount, withErr: e.Err != nil})
				}
				if !sameEvs(gotEv, tc.want[i]) {
					t.Errorf("step %d:\n got %v\nwant %v", i, gotEv, tc.want[i])
				}
			}
		})
	}
}

func sameEvs(a, b []ev) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.kind != y.kind || x.reader != y.reader || !bytes.Equal(x.atr, y.atr) || x.count != y.count || x.withErr != y.withErr {
			return false
		}
	}
	return true
}

// The events must not alias the tracker's state or the caller's readers.
func TestTrackerCopiesATR(t *testing.T) {
	atr := bytes.Clone(atrPIV)
	var tr tracker
	evs := tr.observe([]Reader{card(rd0, 1, atr)}, time.Now())
	atr[0] = 0
	if evs[1].Kind != CardInserted || !bytes.Equal(evs[1].ATR, atrPIV) {
		t.Fatalf("event ATR changed with the caller's slice: %X", evs[1].ATR)
	}
}

func TestEventKindString(t *testing.T) {
	tests := []struct {
		k    EventKind
		want string
	}{
		{ReaderAdded, "reader_added"},
		{ReaderRemoved, "reader_removed"},
		{CardInserted, "card_inserted"},
		{CardRemoved, "card_removed"},
		{CardReset, "card_reset"},
		{ServiceDown, "service_down"},
		{ServiceUp, "service_up"},
		{0, "event_kind(0)"},
		{-3, "event_kind(-3)"},
		{99, "event_kind(99)"},
	}
	for _, tc := range tests {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("EventKind(%d).String() = %q, want %q", int(tc.k), got, tc.want)
		}
	}
}

func TestReaderFromState(t *testing.T) {
	tests := []struct {
		name string
		ev   scard.StateFlag
		atr  []byte
		ok   bool
		want Reader
	}{
		{
			name: "present with counter and changed bit",
			ev:   scard.StateFlag(5<<16) | scard.StatePresent | scard.StateChanged | scard.StateInuse,
			atr:  atrPIV, ok: true,
			want: Reader{Name: "r", CardPresent: true, ATR: atrPIV, EventCount: 5, State: uint32(scard.StatePresent | scard.StateInuse)},
		},
		{
			name: "empty: stale ATR bytes ignored",
			ev:   scard.StateFlag(6<<16) | scard.StateEmpty,
			atr:  atrPIV, ok: true,
			want: Reader{Name: "r", EventCount: 6, State: uint32(scard.StateEmpty)},
		},
		{
			name: "exclusive and mute",
			ev:   scard.StatePresent | scard.StateExclusive | scard.StateMute,
			ok:   true,
			want: Reader{Name: "r", CardPresent: true, Exclusive: true, Mute: true, State: uint32(scard.StatePresent | scard.StateExclusive | scard.StateMute)},
		},
		{name: "unknown reader", ev: scard.StateUnknown | scard.StateChanged, ok: false},
		{name: "ignored reader", ev: scard.StateIgnore, ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := readerFromState("r", tc.ev, tc.atr)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if got.Name != tc.want.Name || got.CardPresent != tc.want.CardPresent || !bytes.Equal(got.ATR, tc.want.ATR) ||
				got.EventCount != tc.want.EventCount || got.State != tc.want.State || got.Exclusive != tc.want.Exclusive || got.Mute != tc.want.Mute {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestOpError(t *testing.T) {
	tests := []struct {
		code        scard.Error
		serviceGone bool
	}{
		{scard.ErrNoService, true},
		{scard.ErrServiceStopped, true},
		{scard.ErrCommError, true},
		{scard.ErrInvalidHandle, true},
		{scard.ErrShutdown, true},
		{scard.ErrNoReadersAvailable, false},
		{scard.ErrTimeout, false},
		{scard.ErrUnknownReader, false},
		{scard.ErrCancelled, false},
	}
	for _, tc := range tests {
		err := opError("SCardListReaders", "", tc.code)
		var oe *OpError
		if !errors.As(err, &oe) || oe.Code != uint32(tc.code) || oe.Op != "SCardListReaders" {
			t.Fatalf("opError(%v) = %#v, want *OpError with the code", tc.code, err)
		}
		if got := errors.Is(err, ErrServiceNotRunning); got != tc.serviceGone {
			t.Errorf("errors.Is(%v, ErrServiceNotRunning) = %v, want %v", err, got, tc.serviceGone)
		}
		if !errors.Is(err, tc.code) {
			t.Errorf("errors.Is(%v, scard code) = false", err)
		}
		wrapped := fmt.Errorf("outer: %w", err)
		if errors.Is(wrapped, ErrServiceNotRunning) != tc.serviceGone {
			t.Errorf("wrapped: errors.Is mismatch for %v", tc.code)
		}
		s := err.Error()
		if !strings.HasPrefix(s, "reader: SCardListReaders: ") || !strings.Contains(s, fmt.Sprintf("0x%08X", uint32(tc.code))) {
			t.Errorf("Error() = %q", s)
		}
	}
	withReader := (&OpError{Op: "SCardGetStatusChange", Reader: rd0, Code: uint32(scard.ErrUnknownReader)}).Error()
	if !strings.Contains(withReader, `"`+rd0+`"`) {
		t.Errorf("Error() = %q, want the reader name", withReader)
	}
	other := opError("x", "", errors.New("boom"))
	if errors.Is(other, ErrServiceNotRunning) || other.Error() != "reader: x: boom" {
		t.Errorf("non-scard error: %v", other)
	}
}

// A receiver that reads nothing for a while loses no event: the queue keeps them all, in order.
func TestQueueUnboundedAndOrdered(t *testing.T) {
	q := &queue{signal: make(chan struct{}, 1)}
	const n = 10000
	for i := range n {
		q.push(Event{Kind: CardInserted, EventCount: uint16(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		e, ok := q.pop(ctx)
		if !ok {
			t.Fatalf("pop %d: context ended", i)
		}
		if e.EventCount != uint16(i) {
			t.Fatalf("pop %d: got count %d", i, e.EventCount)
		}
	}
	// Empty queue: pop waits until ctx ends.
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, ok := q.pop(short); ok {
		t.Fatal("pop on an empty queue returned an event")
	}
	// A push wakes a waiting pop.
	go func() { q.push(Event{Kind: CardRemoved}) }()
	if e, ok := q.pop(ctx); !ok || e.Kind != CardRemoved {
		t.Fatalf("pop after push = %v, %v", e, ok)
	}
}
