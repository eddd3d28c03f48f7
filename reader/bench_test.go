package reader_test

// Integration tests against the hardware-free bench: real pcscd, the vpcd driver and bench.Card virtual cards.
// They take the machine-wide bench lock (bench.Start) and fail, never skip, when a component is missing.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/reader"
)

// eventWait bounds the wait for one event. pcscd polls vpcd every 400 ms and the watcher's service backoff tops out at
// 2 s, so 10 s is generous and only ends a test that would otherwise hang.
const eventWait = 10 * time.Second

// settlePolls is two pcscd polls of vpcd (400 ms each).
const settlePolls = 800 * time.Millisecond

// watch starts reader.Watch for the test and returns its channel; the watch is cancelled and drained in cleanup.
func watch(t *testing.T) <-chan reader.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := reader.Watch(ctx)
	t.Cleanup(func() {
		cancel()
		drain(t, ch)
	})
	return ch
}

// drain receives until ch is closed; it fails t if that takes more than eventWait.
func drain(t testing.TB, ch <-chan reader.Event) {
	t.Helper()
	timeout := time.After(eventWait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Errorf("watch channel not closed %v after its context ended", eventWait)
			return
		}
	}
}

// want describes an expected event; reader "" matches service events only.
type want struct {
	kind   reader.EventKind
	reader string
}

func (w want) String() string { return fmt.Sprintf("%v(%s)", w.kind, w.reader) }

func evString(e reader.Event) string {
	s := fmt.Sprintf("%v(%s) count=%d", e.Kind, e.Reader, e.EventCount)
	if e.ATR != nil {
		s += fmt.Sprintf(" atr=%X", e.ATR)
	}
	if e.Err != nil {
		s += " err=" + e.Err.Error()
	}
	return s
}

// next returns the next event about one of the bench readers (or the service), ignoring other readers' events.
func next(t *testing.T, ch <-chan reader.Event, b *bench.Bench) reader.Event {
	t.Helper()
	timeout := time.After(eventWait)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed while the test still runs")
			}
			if e.Kind == reader.Synced {
				continue // a marker; TestWatchSyncedAfterInitialState checks it
			}
			if e.Reader == "" || e.Reader == b.Readers[0] || e.Reader == b.Readers[1] {
				t.Logf("event %s", evString(e))
				return e
			}
		case <-timeout:
			t.Fatalf("no event within %v", eventWait)
		}
	}
}

// expect receives the next events and checks their kinds and readers, in order.
func expect(t *testing.T, ch <-chan reader.Event, b *bench.Bench, ws ...want) []reader.Event {
	t.Helper()
	var got []reader.Event
	for i, w := range ws {
		e := next(t, ch, b)
		got = append(got, e)
		if e.Kind != w.kind || e.Reader != w.reader {
			t.Fatalf("event %d: got %s, want %v (expected sequence %v)", i, evString(e), w, ws)
		}
	}
	return got
}

// quiet checks that no event about the bench readers arrives within d (used after an expected sequence, to catch
// duplicates). It is not a timing assertion: a late duplicate would only escape the check.
func quiet(t *testing.T, ch <-chan reader.Event, b *bench.Bench, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed while the test still runs")
			}
			if e.Kind != reader.Synced && (e.Reader == "" || e.Reader == b.Readers[0] || e.Reader == b.Readers[1]) {
				t.Fatalf("unexpected event %s", evString(e))
			}
		case <-timeout:
			return
		}
	}
}

func findReader(t *testing.T, rs []reader.Reader, name string) reader.Reader {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("reader %q not listed; got %v", name, rs)
	return reader.Reader{}
}

func list(t *testing.T) []reader.Reader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	rs, err := reader.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return rs
}

func TestListBench(t *testing.T) {
	b := bench.Start(t)

	rs := list(t)
	for _, name := range b.Readers {
		r := findReader(t, rs, name)
		if r.CardPresent || r.ATR != nil || r.Mute {
			t.Errorf("%s before insertion: %+v, want no card", name, r)
		}
	}

	b.InsertWait(t, 0, 1) // Alice's card into the second reader
	rs = list(t)
	r0, r1 := findReader(t, rs, b.Readers[0]), findReader(t, rs, b.Readers[1])
	if r0.CardPresent {
		t.Errorf("%s: %+v, want no card", r0.Name, r0)
	}
	if !r1.CardPresent || !bytes.Equal(r1.ATR, bench.DefaultATR) || r1.Mute {
		t.Errorf("%s: %+v, want a card with ATR %X", r1.Name, r1, bench.DefaultATR)
	}
	if r1.State&0x20 == 0 || r1.State&^0xFFFF != 0 {
		t.Errorf("%s: State 0x%X, want SCARD_STATE_PRESENT and no counter bits", r1.Name, r1.State)
	}
	before := r1.EventCount

	b.RemoveWait(t, 1)
	r1 = findReader(t, list(t), b.Readers[1])
	if r1.CardPresent || r1.ATR != nil {
		t.Errorf("%s after removal: %+v, want no card", r1.Name, r1)
	}
	if r1.EventCount == before {
		t.Errorf("%s: event counter still %d after a removal", r1.Name, before)
	}
}

func TestWatchInsertRemoveSwap(t *testing.T) {
	b := bench.Start(t)
	r0, r1 := b.Readers[0], b.Readers[1]
	b.InsertWait(t, 1, 1) // Bruno's card is already in the second reader when the watch starts

	ch := watch(t)
	evs := expect(t, ch, b,
		want{reader.ReaderAdded, r0},
		want{reader.ReaderAdded, r1}, want{reader.CardInserted, r1})
	if !bytes.Equal(evs[2].ATR, bench.DefaultATR) {
		t.Errorf("initial card_inserted ATR %X, want %X", evs[2].ATR, bench.DefaultATR)
	}

	b.InsertWait(t, 0, 0)
	e := expect(t, ch, b, want{reader.CardInserted, r0})[0]
	if !bytes.Equal(e.ATR, bench.DefaultATR) || e.Time.IsZero() {
		t.Errorf("card_inserted: %s", evString(e))
	}

	b.RemoveWait(t, 0)
	e = expect(t, ch, b, want{reader.CardRemoved, r0})[0]
	if !bytes.Equal(e.ATR, bench.DefaultATR) {
		t.Errorf("card_removed carries ATR %X, want the departed card's %X", e.ATR, bench.DefaultATR)
	}

	b.Swap(t, 1, 0) // Bruno's card out of the second reader, Alice's in
	expect(t, ch, b, want{reader.CardRemoved, r1}, want{reader.CardInserted, r1})
	quiet(t, ch, b, 1500*time.Millisecond)
}

// A card removed and reinserted within one pcscd poll (400 ms) is never seen absent by pcscd; only the reader's event
// counter tells. The watcher must report it as a card change: CardReset (same ATR), or CardRemoved then CardInserted
// should pcscd have polled in between.
func TestWatchFastReinsert(t *testing.T) {
	b := bench.Start(t)
	r0 := b.Readers[0]
	b.InsertWait(t, 0, 0)
	ch := watch(t)
	expect(t, ch, b, want{reader.ReaderAdded, r0}, want{reader.CardInserted, r0}, want{reader.ReaderAdded, b.Readers[1]})

	const rounds = 3
	for i := range rounds {
		// Let pcscd finish with the insertion first: measured here, a remove+reinsert done right after pcscd reported
		// the card present was once never noticed by pcscd at all (no absent poll, counter unchanged), and what pcscd
		// does not see, no PC/SC client can report. Two polls (800 ms) are enough.
		time.Sleep(settlePolls)
		before := findReader(t, list(t), r0).EventCount
		if err := b.Cards[0].Remove(); err != nil {
			t.Fatalf("round %d: Remove: %v", i, err)
		}
		if err := b.Cards[0].Insert(b.Addrs[0]); err != nil {
			t.Fatalf("round %d: Insert: %v", i, err)
		}
		e := next(t, ch, b)
		switch {
		case e.Kind == reader.CardReset && e.Reader == r0:
			if !bytes.Equal(e.ATR, bench.DefaultATR) {
				t.Errorf("round %d: card_reset ATR %X", i, e.ATR)
			}
		case e.Kind == reader.CardRemoved && e.Reader == r0:
			expect(t, ch, b, want{reader.CardInserted, r0})
		default:
			t.Fatalf("round %d: got %s, want card_reset or card_removed+card_inserted for %s", i, evString(e), r0)
		}
		if e.EventCount == before {
			t.Errorf("round %d: event counter unchanged (%d)", i, before)
		}
		// The card must be usable again before the next round (pcscd powers it up after the reinsertion).
		if r := findReader(t, list(t), r0); !r.CardPresent {
			t.Fatalf("round %d: %s: %+v, want the card present", i, r0, r)
		}
	}
	quiet(t, ch, b, 1500*time.Millisecond)
}

// A receiver that does not read for a while loses nothing: every change is queued, in order.
func TestWatchSlowReceiver(t *testing.T) {
	b := bench.Start(t)
	r0 := b.Readers[0]
	ch := watch(t)
	// Read nothing yet, not even the initial state.
	const cycles = 3
	for range cycles {
		b.InsertWait(t, 0, 0)
		b.RemoveWait(t, 0)
	}
	expect(t, ch, b, want{reader.ReaderAdded, r0}, want{reader.ReaderAdded, b.Readers[1]})
	for i := range cycles {
		t.Logf("cycle %d", i)
		expect(t, ch, b, want{reader.CardInserted, r0}, want{reader.CardRemoved, r0})
	}
}

// pcscd killed and restarted under a running watch: ServiceDown (once), the removal of everything, then ServiceUp and
// the new state, and card events keep coming through the same channel. List fails with ErrServiceNotRunning meanwhile.
func TestWatchSurvivesPCSCDRestart(t *testing.T) {
	b := bench.Start(t)
	t.Cleanup(func() {
		if err := bench.EnsurePCSCD(); err != nil {
			t.Errorf("restarting pcscd after the test: %v", err)
		}
	})
	r0, r1 := b.Readers[0], b.Readers[1]
	b.InsertWait(t, 0, 0)
	ch := watch(t)
	expect(t, ch, b, want{reader.ReaderAdded, r0}, want{reader.CardInserted, r0}, want{reader.ReaderAdded, r1})

	if err := bench.StopPCSCD(); err != nil {
		t.Fatalf("StopPCSCD: %v", err)
	}
	down := expect(t, ch, b,
		want{reader.ServiceDown, ""},
		want{reader.CardRemoved, r0}, want{reader.ReaderRemoved, r0},
		want{reader.ReaderRemoved, r1})
	if !errors.Is(down[0].Err, reader.ErrServiceNotRunning) {
		t.Errorf("service_down Err = %v, want one matching ErrServiceNotRunning", down[0].Err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	rs, err := reader.List(ctx)
	cancel()
	if !errors.Is(err, reader.ErrServiceNotRunning) || rs != nil {
		t.Errorf("List with pcscd stopped = %v, %v; want nil, ErrServiceNotRunning", rs, err)
	}

	// A watch started while the service is down reports it, and ends cleanly from its backoff.
	ctx2, cancel2 := context.WithCancel(context.Background())
	ch2 := reader.Watch(ctx2)
	select {
	case e := <-ch2:
		if e.Kind != reader.ServiceDown || !errors.Is(e.Err, reader.ErrServiceNotRunning) {
			t.Errorf("first event of a watch without service: %s, want service_down", evString(e))
		}
	case <-time.After(eventWait):
		t.Errorf("no service_down from a watch started without service")
	}
	cancel2()
	drain(t, ch2)

	if err := bench.EnsurePCSCD(); err != nil {
		t.Fatalf("EnsurePCSCD: %v", err)
	}
	expect(t, ch, b, want{reader.ServiceUp, ""})
	// The card's socket died with the old pcscd, so the readers come back empty (whether the card reconnects is up
	// to the bench; put it back explicitly).
	var added []string
	for len(added) < 2 {
		e := next(t, ch, b)
		switch {
		case e.Kind == reader.ReaderAdded && !slices.Contains(added, e.Reader):
			added = append(added, e.Reader)
		case e.Kind == reader.CardInserted:
		default:
			t.Fatalf("after service_up: %s, want reader_added for both readers", evString(e))
		}
	}

	b.RemoveWait(t, 0)
	b.InsertWait(t, 1, 0)
	for {
		e := next(t, ch, b)
		if e.Kind == reader.CardRemoved && e.Reader == r0 {
			continue // if the card had come back by itself, it went out again
		}
		if e.Kind != reader.CardInserted || e.Reader != r0 {
			t.Fatalf("after restart: %s, want card_inserted(%s)", evString(e), r0)
		}
		break
	}
}

// After the context ends the channel closes and no goroutine of the watch remains, whether the watcher was blocked in
// SCardGetStatusChange or a receiver never read.
func TestWatchNoGoroutineLeak(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)

	settle := func() int { // a few runs of the scheduler so finished goroutines are gone
		n := runtime.NumGoroutine()
		for range 50 {
			time.Sleep(10 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				return m
			}
			n = m
		}
		return n
	}
	base := settle()

	for round, read := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		var chs []<-chan reader.Event
		for range 3 {
			chs = append(chs, reader.Watch(ctx))
		}
		if read {
			for _, ch := range chs {
				expect(t, ch, b, want{reader.ReaderAdded, b.Readers[0]})
			}
		}
		time.Sleep(300 * time.Millisecond) // let the watchers block in SCardGetStatusChange
		cancel()
		for _, ch := range chs {
			drain(t, ch)
		}
		deadline := time.Now().Add(5 * time.Second)
		n := settle()
		for n > base && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			n = settle()
		}
		if n > base {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("round %d: %d goroutines after cancel, %d before:\n%s", round, n, base, stacksOf(buf))
		}
	}
}

// stacksOf keeps the goroutine dumps that mention this package.
func stacksOf(dump []byte) string {
	var keep []string
	for _, g := range strings.Split(string(dump), "\n\n") {
		if strings.Contains(g, "reader") {
			keep = append(keep, g)
		}
	}
	if len(keep) == 0 {
		return string(dump)
	}
	return strings.Join(keep, "\n\n")
}

// Synced follows the initial state, so a consumer knows when "no CardInserted" means "no card".
func TestWatchSyncedAfterInitialState(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)
	ch := watch(t)
	inserted := false
	timeout := time.After(eventWait)
	for {
		select {
		case e := <-ch:
			switch e.Kind {
			case reader.CardInserted:
				inserted = inserted || e.Reader == b.Readers[0]
			case reader.Synced:
				if !inserted {
					t.Fatal("synced before the inserted card was reported")
				}
				return
			}
		case <-timeout:
			t.Fatal("no synced event")
		}
	}
}
