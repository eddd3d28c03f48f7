package reader

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ebfe/scard"
)

// Timing of the watcher. pollTimeout bounds each blocking SCardGetStatusChange: pcsc-lite 1.9.9 does not count
// readers in the \\?PnP?\Notification state, so the watcher re-lists the readers and re-reads their state at least
// this often. The backoff applies to SCardEstablishContext retries while the service is down.
const (
	pollTimeout = time.Second
	backoffMin  = 50 * time.Millisecond
	backoffMax  = 2 * time.Second
	// minIdle is the least time between two wake-ups that produced no event, so that a reader whose flags keep
	// changing (or a name the service reports as unknown) cannot make the watcher spin.
	minIdle = 10 * time.Millisecond
)

// pnpNotification is the pseudo reader whose state changes when readers are added or removed.
const pnpNotification = `\\?PnP?\Notification`

// Watch watches the PC/SC service and returns a channel of reader and card events. It never fails: problems with the
// service become ServiceDown events, and the watcher recovers by itself when the service comes back.
//
// The first events describe the current state: ReaderAdded for each reader, then CardInserted if it holds a card
// (or a single ServiceDown if the service cannot be reached). After that, only changes are sent. A card change is
// detected from presence, ATR and the reader's event counter, so a card removed and reinserted faster than the
// service polls is reported too (CardReset, or CardRemoved then CardInserted when the ATR differs; see EventKind).
// When the service is lost (pcscd stopped or restarted), Watch sends ServiceDown once, then CardRemoved and
// ReaderRemoved for everything that was there, retries with a backoff of 50 ms doubling to 2 s, and when the
// service answers again sends ServiceUp followed by the new state. Should a PC/SC call fail with another code while
// the service still answers, the watcher moves to a new context without a ServiceDown and reports the differences.
// Events for one reader are in order.
//
// No event is dropped for a slow receiver: events queue up inside without bound until they are received. When ctx
// ends, the watcher cancels its blocking PC/SC call, releases its PC/SC context, discards undelivered events and
// closes the channel; the caller should keep receiving until the channel is closed, after which no goroutine of
// this watch remains. Each Watch uses its own PC/SC context and goroutines; several may run at once.
func Watch(ctx context.Context) <-chan Event {
	out := make(chan Event)
	q := &queue{signal: make(chan struct{}, 1)}
	pollerDone := make(chan struct{})
	w := &watcher{q: q}
	go func() {
		defer close(pollerDone)
		w.run(ctx)
	}()
	go func() {
		defer close(out)
		defer func() { <-pollerDone }() // close out only once the PC/SC context is released
		for {
			ev, ok := q.pop(ctx)
			if !ok {
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// queue is an unbounded FIFO of events between the poller and the deliverer.
type queue struct {
	mu     sync.Mutex
	items  []Event
	signal chan struct{} // capacity 1: "items may be non-empty"
}

func (q *queue) push(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, evs...)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop waits for the next event; ok is false when ctx ended first.
func (q *queue) pop(ctx context.Context) (ev Event, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			ev = q.items[0]
			q.items[0] = Event{}
			q.items = q.items[1:]
			if len(q.items) == 0 {
				q.items = nil // let the backing array go
			}
			q.mu.Unlock()
			return ev, true
		}
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-ctx.Done():
			return Event{}, false
		}
	}
}

// watcher is the polling side of Watch; run is its only goroutine.
type watcher struct {
	q  *queue
	t  tracker
	mu sync.Mutex     // guards cur
	cu *scard.Context // the context in use, for Cancel from the ctx.AfterFunc goroutine
}

func (w *watcher) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.cu != nil {
			_ = w.cu.Cancel()
		}
	})
	defer stop()

	backoff := backoffMin
	for ctx.Err() == nil {
		sc, err := scard.EstablishContext()
		if err != nil {
			err = opError("SCardEstablishContext", "", err)
		} else {
			w.mu.Lock()
			w.cu = sc
			w.mu.Unlock()
			began := time.Now()
			err = w.session(ctx, sc)
			w.mu.Lock()
			w.cu = nil
			w.mu.Unlock()
			_ = sc.Release() // a context broken by a service restart stays broken: always start afresh
			if ctx.Err() != nil {
				return
			}
			if time.Since(began) >= backoffMax {
				backoff = backoffMin // a long healthy session: retry at once; repeated quick failures back off
			}
			if !errors.Is(err, ErrServiceNotRunning) {
				// An unexpected code (seen: SCARD_W_SECURITY_VIOLATION when pcscd was killed mid-call). Ask the
				// service on a fresh context: if it answers, the failure was this context's, and the next one
				// carries on from the known state without a ServiceDown.
				if probeErr := probe(); probeErr != nil {
					err = probeErr
				} else {
					if !sleep(ctx, backoff) {
						return
					}
					backoff = min(2*backoff, backoffMax)
					continue
				}
			}
		}
		w.q.push(w.t.fail(err, time.Now())...)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// probe reports whether the service answers on a new context: nil if it does, else the error.
func probe() error {
	sc, err := scard.EstablishContext()
	if err != nil {
		return opError("SCardEstablishContext", "", err)
	}
	defer sc.Release() //nolint:errcheck // nothing to do about a failed release
	_, err = listReaders(sc)
	return err
}

// session polls through sc until ctx ends (nil) or a PC/SC call fails (the error).
func (w *watcher) session(ctx context.Context, sc *scard.Context) error {
	pnp := scard.StateUnaware
	synced := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		names, err := listReaders(sc)
		if err != nil {
			return err
		}
		readers, err := readStates(sc, names)
		if err != nil {
			return err
		}
		evs := w.t.observe(readers, time.Now())
		w.q.push(evs...)
		if !synced {
			w.q.push(Event{Kind: Synced, Time: time.Now()})
			synced = true
		}

		// Block until something changes, passing back the states just read (with their event counters) so that
		// any difference, including a remove+reinsert between two service polls, ends the wait at once.
		states := make([]scard.ReaderState, 0, len(readers)+1)
		states = append(states, scard.ReaderState{Reader: pnpNotification, CurrentState: pnp})
		for _, r := range readers {
			cur := scard.StateFlag(uint32(r.EventCount)<<16 | r.State)
			states = append(states, scard.ReaderState{Reader: r.Name, CurrentState: cur})
		}
		start := time.Now()
		err = sc.GetStatusChange(states, pollTimeout)
		switch {
		case err == nil:
			pnp = states[0].EventState &^ scard.StateChanged
		case isCode(err, scard.ErrTimeout):
			continue
		case isCode(err, scard.ErrCancelled):
			if ctx.Err() != nil {
				return nil
			}
		case vanishedReader(err):
		default:
			return opError("SCardGetStatusChange", "", err)
		}
		if len(evs) == 0 && time.Since(start) < minIdle {
			if !sleep(ctx, minIdle) {
				return nil
			}
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
