package session

import (
	"cmp"
	"fmt"
	"sync"
	"time"
)

// EventKind says what happened to a card or the PC/SC service.
type EventKind int

// Event kinds delivered to subscribers.
const (
	CardInserted   EventKind = iota + 1 // a card appeared in Reader
	CardRemoved                         // the card in Reader left or changed: everything bound to it is gone
	ReadersChanged                      // a reader appeared or vanished, or the PC/SC service came back
	ServiceDown                         // the PC/SC service stopped: every card session is gone
	LoggedIn                            // a login succeeded on the card in Reader
	SessionEnded                        // a token error ended the card session; the card is still there (new PIN needed)
	PINRefused                          // the card refused a PIN (Err: the *token.PINError): its PIN state changed
)

var eventNames = map[EventKind]string{CardInserted: "card_inserted", CardRemoved: "card_removed",
	ReadersChanged: "readers_changed", ServiceDown: "service_down", LoggedIn: "logged_in",
	SessionEnded: "session_ended", PINRefused: "pin_refused"}

func (k EventKind) String() string {
	return cmp.Or(eventNames[k], fmt.Sprintf("EventKind(%d)", int(k)))
}

// Event is delivered to subscribers after the manager has acted on it (for CardRemoved: after the agents of the
// ended generations have exited and their tracked connections are closed).
type Event struct {
	Kind EventKind
	// Reader is the PC/SC reader of a reader event; for an event about one card (a PKCS#11 error revealed a change,
	// a login), the card's reader when known for sure, else its slot description.
	Reader string
	// Generation is the card generation that ended (CardRemoved, SessionEnded) or began (LoggedIn); for a reader
	// event it is set only when exactly one card generation was concerned.
	Generation uint64
	// TokenSerial is the card's token serial for LoggedIn and PINRefused.
	TokenSerial string
	Err         error // the PKCS#11 error that revealed a change, or the PC/SC error for ServiceDown
	Time        time.Time
}

// queued is an event waiting for delivery; gate, when not nil, holds it (and every event after it) back until it is
// closed: the manager has finished acting on it.
type queued struct {
	ev   Event
	gate <-chan struct{}
}

// dispatcher delivers events to subscribers from one goroutine, in the order the manager emitted them. Its queue is
// unbounded so that emitting never blocks the manager; subscribers must not block (the GUI hands each event to its
// UI goroutine).
type dispatcher struct {
	mu     sync.Mutex
	queue  []queued
	wake   chan struct{} // a token when the queue is not empty
	subs   map[int]func(Event)
	subSeq int
	closed bool
	done   chan struct{} // closed when the goroutine has delivered everything after close
}

func (d *dispatcher) init() {
	d.wake = make(chan struct{}, 1)
	d.subs = map[int]func(Event){}
	d.done = make(chan struct{})
	go d.run()
}

func (d *dispatcher) run() {
	defer close(d.done)
	for range d.wake {
		for {
			d.mu.Lock()
			if len(d.queue) == 0 {
				closed := d.closed
				d.mu.Unlock()
				if closed {
					return
				}
				break
			}
			q := d.queue[0]
			d.queue = d.queue[1:]
			fns := make([]func(Event), 0, len(d.subs))
			for id := 1; id <= d.subSeq; id++ { // in subscription order
				if f, ok := d.subs[id]; ok {
					fns = append(fns, f)
				}
			}
			d.mu.Unlock()
			if q.gate != nil {
				<-q.gate // carryOut is bounded (agentExitWait per agent and per connection, in parallel)
			}
			for _, f := range fns {
				f(q.ev)
			}
		}
	}
}

func (d *dispatcher) post(ev Event, gate <-chan struct{}) {
	d.mu.Lock()
	if !d.closed {
		d.queue = append(d.queue, queued{ev: ev, gate: gate})
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close delivers what is queued, then stops the goroutine (bounded: a subscriber stuck in a call cannot hold Close).
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	select {
	case <-d.done:
	case <-time.After(agentExitWait):
	}
}

// emit queues ev for the subscribers, for delivery at once (events that end nothing: see doomed.emit for those that
// do). Callers hold m.mu, so the queue order is the order of the state changes.
func (m *Manager) emit(ev Event) { m.events.post(ev, nil) }

// Subscribe registers fn to be called after each event, in the order of the events, from one goroutine of the
// manager's (never the caller's, never concurrently with itself). fn must not block (the GUI hands the event to its
// UI goroutine). Events emitted before Subscribe are not replayed. The returned func unsubscribes.
func (m *Manager) Subscribe(fn func(Event)) (unsubscribe func()) {
	d := &m.events
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subSeq++
	id := d.subSeq
	d.subs[id] = fn
	return func() {
		d.mu.Lock()
		delete(d.subs, id)
		d.mu.Unlock()
	}
}
