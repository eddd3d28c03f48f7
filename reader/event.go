package reader

import (
	"bytes"
	"slices"
	"strconv"
	"time"
)

// EventKind says what changed.
type EventKind int

// The event kinds. Their String values are stable identifiers (for logs and diagnosis codes), not user-facing words.
const (
	// ReaderAdded: a reader appeared (or was there when the watch started, or when the service came back).
	ReaderAdded EventKind = iota + 1
	// ReaderRemoved: a reader disappeared (or the service went down). A CardRemoved for its card comes first.
	ReaderRemoved
	// CardInserted: a card is now present in Event.Reader; Event.ATR is its ATR.
	CardInserted
	// CardRemoved: the card left Event.Reader; Event.ATR is the ATR it had.
	CardRemoved
	// CardReset: a card stayed present but its session changed: either the reader's event counter changed with the
	// same ATR (the card was removed and reinserted between two polls of the service, possibly replaced by another
	// card of the same model, or it was reset), or the ATR changed with the same counter (a reset). Treat it like
	// CardRemoved followed by CardInserted: nothing bound to the previous card session (PKCS#11 sessions, logins,
	// key handles) is valid any more. When both the counter and the ATR changed, Watch emits CardRemoved then
	// CardInserted instead.
	CardReset
	// ServiceDown: the PC/SC service became unreachable (Event.Err says why). Emitted once per outage, before the
	// CardRemoved and ReaderRemoved events of everything that was there.
	ServiceDown
	// ServiceUp: the service is reachable again after a ServiceDown; the ReaderAdded and CardInserted events of the
	// new state follow.
	ServiceUp
	// Synced: every event describing the state at the start of the watch (or after ServiceUp) has been sent; from
	// here on, a reader without a CardInserted event really has no card.
	Synced
)

var kindNames = [...]string{
	ReaderAdded:   "reader_added",
	ReaderRemoved: "reader_removed",
	CardInserted:  "card_inserted",
	CardRemoved:   "card_removed",
	CardReset:     "card_reset",
	ServiceDown:   "service_down",
	ServiceUp:     "service_up",
	Synced:        "synced",
}

// String returns the stable lowercase identifier of k ("reader_added", "card_inserted", ...), or "event_kind(N)" for
// an unknown value.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "event_kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one change seen by Watch.
type Event struct {
	Kind EventKind
	// Reader is the reader concerned; "" for ServiceDown and ServiceUp.
	Reader string
	// ATR is the card's ATR: the new card's for CardInserted and CardReset, the departed card's for CardRemoved;
	// nil otherwise.
	ATR []byte
	// EventCount is the reader's event counter after the change (the last known one for removals).
	EventCount uint16
	// Time is when the watcher saw the change.
	Time time.Time
	// Err is the cause of a ServiceDown (matching ErrServiceNotRunning when it is a lost service); nil otherwise.
	Err error
}

// tracker turns successive observations of the PC/SC service into events. It is the pure part of Watch: no I/O, no
// goroutines, no clock (times are passed in).
type tracker struct {
	started bool              // an observation was made
	up      bool              // the last observation reached the service
	readers map[string]Reader // state at the last observation
}

// observe records a successful reading of the readers (in service order) and returns the events leading from the
// previous state to it. The first observation yields the whole state; one after a failure starts with ServiceUp.
func (t *tracker) observe(readers []Reader, now time.Time) []Event {
	var evs []Event
	if t.started && !t.up {
		evs = append(evs, Event{Kind: ServiceUp, Time: now})
	}
	t.started, t.up = true, true
	next := make(map[string]Reader, len(readers))
	for _, r := range readers {
		next[r.Name] = r
	}
	evs = append(evs, diff(t.readers, next, now)...)
	t.readers = next
	return evs
}

// fail records that the service could not be read (err) and returns ServiceDown followed by the removal of
// everything that was known, or nothing if the service was already down.
func (t *tracker) fail(err error, now time.Time) []Event {
	if t.started && !t.up {
		return nil
	}
	t.started, t.up = true, false
	evs := []Event{{Kind: ServiceDown, Time: now, Err: err}}
	evs = append(evs, diff(t.readers, nil, now)...)
	t.readers = nil
	return evs
}

// diff returns the events that lead from prev to next, readers in name order; for each reader the order is
// ReaderAdded, card events, ReaderRemoved.
func diff(prev, next map[string]Reader, now time.Time) []Event {
	names := make([]string, 0, len(prev)+len(next))
	for n := range prev {
		names = append(names, n)
	}
	for n := range next {
		if _, ok := prev[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)

	var evs []Event
	ev := func(k EventKind, r Reader, atr []byte) {
		evs = append(evs, Event{Kind: k, Reader: r.Name, ATR: bytes.Clone(atr), EventCount: r.EventCount, Time: now})
	}
	for _, n := range names {
		p, hadP := prev[n]
		q, hasQ := next[n]
		switch {
		case !hasQ: // reader gone
			if p.CardPresent {
				ev(CardRemoved, p, p.ATR)
			}
			ev(ReaderRemoved, p, nil)
		case !hadP: // reader new
			ev(ReaderAdded, q, nil)
			if q.CardPresent {
				ev(CardInserted, q, q.ATR)
			}
		case sameCard(p, q):
		case p.CardPresent && !q.CardPresent:
			ev(CardRemoved, Reader{Name: n, EventCount: q.EventCount}, p.ATR)
		case !p.CardPresent && q.CardPresent:
			ev(CardInserted, q, q.ATR)
		case p.CardPresent && q.CardPresent:
			if p.EventCount == q.EventCount || bytes.Equal(p.ATR, q.ATR) {
				// Same insertion with a new ATR (a reset), or a new insertion of a card with the same ATR.
				ev(CardReset, q, q.ATR)
			} else {
				ev(CardRemoved, Reader{Name: n, EventCount: q.EventCount}, p.ATR)
				ev(CardInserted, q, q.ATR)
			}
		}
		// Both absent with a new counter: a card came and went between two polls; nothing was bound to it.
	}
	return evs
}
