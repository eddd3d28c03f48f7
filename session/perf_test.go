package session_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// bareWatcher is the baseline: the simplest possible PC/SC watcher (one context, GetStatusChange in a loop on one
// reader), timestamping each time it sees the card leave or come.
type bareWatcher struct {
	ctx      *scard.Context
	mu       sync.Mutex
	removed  []time.Time
	inserted []time.Time
	err      error    // why the watcher stopped, once done is closed
	hist     []string // every state change, for the message when a removal is missed
	done     chan struct{}
}

func startBareWatcher(t testing.TB, readerName string) *bareWatcher {
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	w := &bareWatcher{ctx: ctx, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		rs := []scard.ReaderState{{Reader: readerName, CurrentState: scard.StateUnaware}}
		for {
			if err := ctx.GetStatusChange(rs, -1); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			ev := rs[0].EventState
			now := time.Now()
			w.mu.Lock()
			w.hist = append(w.hist, fmt.Sprintf("%s %#x→%#x", now.Format("15:04:05.000"), rs[0].CurrentState, ev))
			// A card pulled while pcscd talks to it may first make the reader unavailable, then empty: any state
			// without a card after one with a card is the removal.
			was, is := rs[0].CurrentState&scard.StatePresent != 0, ev&scard.StatePresent != 0
			switch {
			case was && !is:
				w.removed = append(w.removed, now)
			case !was && is && rs[0].CurrentState != scard.StateUnaware:
				w.inserted = append(w.inserted, now)
			}
			w.mu.Unlock()
			rs[0].CurrentState = ev &^ scard.StateChanged
		}
	}()
	t.Cleanup(func() { _ = ctx.Cancel(); <-w.done; _ = ctx.Release() })
	return w
}

// state says whether the watcher still runs, and why it stopped.
func (w *bareWatcher) state() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return "stopped: " + w.err.Error()
	}
	return fmt.Sprintf("running; %d removals, %d insertions seen; states %v", len(w.removed), len(w.inserted), w.hist)
}

// last returns the latest removal (or insertion) the watcher saw, zero if none.
func (w *bareWatcher) last(insertion bool) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.removed
	if insertion {
		l = w.inserted
	}
	if len(l) == 0 {
		return time.Time{}
	}
	return l[len(l)-1]
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// agentWatch records when each agent the manager starts has exited (its Done channel closed: the process is gone
// and reaped).
type agentWatch struct {
	mu    sync.Mutex
	exits map[session.Agent]time.Time // zero while the agent runs
}

func (w *agentWatch) wrap(a session.Agent) session.Agent {
	w.mu.Lock()
	w.exits[a] = time.Time{}
	w.mu.Unlock()
	go func() {
		<-a.Done()
		now := time.Now()
		w.mu.Lock()
		w.exits[a] = now
		w.mu.Unlock()
	}()
	return a
}

// running returns the agents that have not exited.
func (w *agentWatch) running() []session.Agent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []session.Agent
	for a, t := range w.exits {
		if t.IsZero() {
			out = append(out, a)
		}
	}
	return out
}

// lastExit waits until every agent of as has exited and returns the latest exit time.
func (w *agentWatch) lastExit(as []session.Agent, timeout time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(time.Millisecond) {
		var last time.Time
		w.mu.Lock()
		running := 0
		for _, a := range as {
			if t := w.exits[a]; t.IsZero() {
				running++
			} else if t.After(last) {
				last = t
			}
		}
		w.mu.Unlock()
		if running == 0 {
			return last, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d agents still running %v after the removal", running, len(as), timeout)
		}
	}
}

// dialCard makes a TLS connection with the card to addr and reads the server's greeting line. cache false drops the
// TLS session cache the manager gives (a client that never resumes).
func (f *fixture) dialCard(addr string, rec *session.Record, cache bool) (*tls.Conn, *session.Identity, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfg, id, err := f.m.TLSConfig(ctx, &tls.Config{RootCAs: f.pool, ServerName: "127.0.0.1"}, session.Selection{}, rec)
	if err != nil {
		return nil, nil, err
	}
	if !cache {
		cfg.ClientSessionCache = nil
	}
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, rec.Explain(err)
	}
	tc := c.(*tls.Conn)
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(tc).ReadString('\n')
	_ = tc.SetReadDeadline(time.Time{})
	if err == nil && line != "hello "+bench.AliceName+"\n" {
		err = fmt.Errorf("server answered %q", line)
	}
	if err != nil {
		tc.Close()
		return nil, nil, rec.Explain(err)
	}
	return tc, id, nil
}

// procKB reads a field (VmRSS, VmHWM) of a process's /proc status, in kB; -1 when it cannot.
func procKB(pid int, field string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}

// cardChangeCycles is how many remove/reinsert cycles BenchmarkCardChange makes; its tables show medians.
const cardChangeCycles = 15

// BenchmarkCardChange measures, on the real chain (pcscd + vpcd + virtual card + OpenSC), over cardChangeCycles
// cycles, medians:
//   - removal: from a bare PC/SC watcher seeing the card leave to every agent process that ran before the removal
//     having exited (reaped), to a tracked TLS connection of the card being seen closed by its server, and to the
//     subscribers being told (the time the event reached a subscriber; target ≤ 20 ms for the last of the three);
//   - reinsertion: from the card's insertion to the first successful TLS handshake, PIN entry excluded; baseline:
//     when the bare watcher saw the card;
//   - card signatures per handshake for a first and a resumed connection per card session; baseline in the same
//     cycles: the same two connections made with no TLS session cache;
//   - the PKCS#11 agent's memory after listing the card's slots and certificates; baseline: OpenSC's own
//     pkcs11-tool listing the same card's objects (its peak RSS).
func BenchmarkCardChange(b *testing.B) {
	watch := &agentWatch{exits: map[session.Agent]time.Time{}}
	f := newFixture(b, watch.wrap)
	srv := startTLSServer(b, f.b, tls.VersionTLS12, tls.VersionTLS13)
	closed := make(chan time.Time, cardChangeCycles)
	held := startTLSServerFunc(b, f.b, tls.VersionTLS12, tls.VersionTLS13, func(tc *tls.Conn) {
		_ = tc.SetDeadline(time.Now().Add(time.Minute))
		_, _ = io.Copy(io.Discard, tc) // until the client closes it
		closed <- time.Now()
	})
	told := make(chan time.Time, 16)
	unsub := f.m.Subscribe(func(ev session.Event) {
		if ev.Kind == session.CardRemoved && ev.Reader == f.b.Readers[0] {
			select {
			case told <- time.Now():
			default:
			}
		}
	})
	defer unsub()
	bare := startBareWatcher(b, f.b.Readers[0])

	var toExit, toClosed, toTold, toAll, reinsert, afterBare []time.Duration
	sigs, handshakes, baseSigs, baseHandshakes, killed := 0, 0, 0, 0, 0
	for i := 0; i < cardChangeCycles; i++ {
		start := time.Now()
		f.pinDur.Store(0)
		if err := f.b.Cards[0].Insert(f.b.Addrs[0]); err != nil {
			b.Fatal(err)
		}
		var got string
		var err error
		rec := &session.Record{}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			got, err = f.connect(b, srv.addr, nil, rec)
			if err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond) // the card is not seen yet: pcscd polls every 400 ms
		}
		if err != nil || got != "hello "+bench.AliceName+"\n" {
			b.Fatalf("cycle %d: %q %v", i, got, err)
		}
		pd := time.Duration(f.pinDur.Load())
		done := time.Now()
		reinsert = append(reinsert, done.Sub(start)-pd)
		if seen := bare.last(true); seen.After(start) {
			afterBare = append(afterBare, done.Sub(seen)-pd)
		}
		// A second connection in the same card session: resumed, no signature. Then the baseline: the same two
		// connections without a TLS session cache.
		rec2 := &session.Record{}
		if _, err := f.connect(b, srv.addr, nil, rec2); err != nil {
			b.Fatal(err)
		}
		sigs += rec.Facts().Signatures + rec2.Facts().Signatures
		handshakes += 2
		for range 2 {
			r := &session.Record{}
			c, _, err := f.dialCard(srv.addr, r, false)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
			baseSigs += r.Facts().Signatures
			baseHandshakes++
		}

		// A connection the manager tracks, left open, and the agents running now: the removal must end them all.
		conn, id, err := f.dialCard(held.addr, &session.Record{}, true)
		if err != nil {
			b.Fatal(err)
		}
		untrack := id.Track(conn)
		running := watch.running()
		if len(running) == 0 {
			b.Fatalf("cycle %d: no agent running before the removal", i)
		}
		killed += len(running)
		for len(told) > 0 {
			<-told
		}
		if err := f.b.Cards[0].Remove(); err != nil {
			b.Fatal(err)
		}
		var toldAt, closedAt time.Time
		select {
		case toldAt = <-told:
		case <-time.After(10 * time.Second):
			b.Fatalf("cycle %d: subscribers not told of the removal within 10 s", i)
		}
		select {
		case closedAt = <-closed:
		case <-time.After(5 * time.Second):
			b.Fatalf("cycle %d: the server did not see the tracked connection closed within 5 s", i)
		}
		untrack()
		exitAt, err := watch.lastExit(running, 5*time.Second)
		if err != nil {
			b.Fatalf("cycle %d: %v", i, err)
		}
		seen := time.Time{}
		for deadline := time.Now().Add(2 * time.Second); seen.IsZero() || seen.Before(start); {
			seen = bare.last(false)
			if time.Now().After(deadline) {
				b.Fatalf("cycle %d: the bare watcher did not see the removal (%s)", i, bare.state())
			}
			time.Sleep(time.Millisecond)
		}
		toExit = append(toExit, exitAt.Sub(seen))
		toClosed = append(toClosed, closedAt.Sub(seen))
		toTold = append(toTold, toldAt.Sub(seen))
		toAll = append(toAll, max(exitAt.Sub(seen), closedAt.Sub(seen), toldAt.Sub(seen)))
		if err := bench.WaitCard(f.b.Readers[0], false, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}

	// Agent memory after the work pkcs11-tool does below: list the slots and read the card's certificates.
	f.b.InsertWait(b, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := token.Start(ctx, f.b.OpenSC)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	slots, err := c.Slots(ctx)
	if err != nil || len(slots) == 0 {
		b.Fatalf("agent slots: %v %v", slots, err)
	}
	for _, s := range slots {
		if _, err := c.Certificates(ctx, s.ID); err != nil {
			b.Fatal(err)
		}
	}
	agentRSS, agentPeak := procKB(c.PID(), "VmRSS"), procKB(c.PID(), "VmHWM")
	tool := exec.CommandContext(ctx, "pkcs11-tool", "--module", f.b.OpenSC, "--list-objects", "--type", "cert")
	out, err := tool.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Certificate Object") {
		b.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, out)
	}
	toolPeak := tool.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // kB on Linux

	all := median(toAll)
	b.ReportMetric(msf(all), "ms-removal-all-done-after-bare-watcher")
	b.ReportMetric(msf(median(toExit)), "ms-removal-agents-exited-after-bare-watcher")
	b.ReportMetric(msf(median(toClosed)), "ms-removal-conn-closed-after-bare-watcher")
	b.ReportMetric(msf(median(toTold)), "ms-removal-told-after-bare-watcher")
	b.ReportMetric(msf(slices.Max(toAll)), "ms-removal-all-done-max")
	b.ReportMetric(msf(median(reinsert)), "ms-reinsert-to-handshake")
	b.ReportMetric(msf(median(afterBare)), "ms-handshake-after-bare-watcher")
	b.ReportMetric(float64(sigs)/float64(handshakes), "signatures/handshake")
	b.ReportMetric(float64(baseSigs)/float64(baseHandshakes), "signatures/handshake-no-cache")
	b.ReportMetric(float64(agentRSS)/1024, "MB-agent-RSS")
	b.ReportMetric(float64(agentPeak)/1024, "MB-agent-peak-RSS")
	b.ReportMetric(float64(toolPeak)/1024, "MB-pkcs11-tool-peak-RSS")
	b.ReportMetric(cardChangeCycles, "cycles")
	b.Logf("\n| measure (median of %d cycles) | CardMail | baseline (same run) |\n|---|---|---|\n"+
		"| card removal → all done: agents exited, tracked connection closed, subscribers told | %.1f ms after the bare watcher (max %.1f ms) | bare scard watcher = 0 |\n"+
		"| … every agent running before the removal exited (%.1f agents per removal) | %.1f ms | |\n"+
		"| … tracked TLS connection seen closed by its server | %.1f ms | |\n"+
		"| … subscribers told (event received) | %.1f ms | |\n"+
		"| card insertion → first TLS handshake (PIN excluded) | %.0f ms (%.0f ms after the bare watcher saw the card) | bare watcher sees the card after %.0f ms (pcscd polls every 400 ms) |\n"+
		"| card signatures per handshake (first + resumed) | %.2f | same connections, no TLS session cache: %.2f |\n"+
		"| PKCS#11 agent RSS after listing the card (OpenSC loaded) | %.1f MB (peak %.1f MB) | pkcs11-tool --list-objects peak %.1f MB |",
		cardChangeCycles, msf(all), msf(slices.Max(toAll)), float64(killed)/cardChangeCycles, msf(median(toExit)),
		msf(median(toClosed)), msf(median(toTold)), msf(median(reinsert)), msf(median(afterBare)),
		msf(median(reinsert)-median(afterBare)), float64(sigs)/float64(handshakes),
		float64(baseSigs)/float64(baseHandshakes), float64(agentRSS)/1024, float64(agentPeak)/1024, float64(toolPeak)/1024)
	// The work measured is the fixed cycle count above: run with -benchtime 1x (make bench does).
}

// BenchmarkMidSignatureRemoval pulls the card while it signs, 10 times, on the real chain with the 80-byte reader
// names, and reports the latency from the card leaving to the caller's error (which must be card_removed every
// time), median and max. Baseline in the same run: when a bare PC/SC watcher saw the same removals (pcscd polls every
// 400 ms; OpenSC answers a signature on a vanished card with an error, or hangs, inside that window).
func BenchmarkMidSignatureRemoval(b *testing.B) {
	f := newFixtureOpt(b, bench.Options{FriendlyName: bench.LongFriendlyName}, nil)
	srv := startTLSServer(b, f.b, tls.VersionTLS12, tls.VersionTLS12)
	bare := startBareWatcher(b, f.b.Readers[0])
	const pulls = 10
	var toError, toBare []time.Duration
	for i := 0; i < pulls; i++ {
		f.insert(b, 0, 0)
		card := f.b.Cards[0]
		var once sync.Once
		var pulled time.Time
		card.SetSignHook(func() { once.Do(func() { pulled = time.Now(); go card.Remove() }) })
		// A fresh server name: no cached session, the handshake signs.
		_, err := f.connect(b, srv.addr, &tls.Config{ServerName: "localhost"}, &session.Record{})
		got := time.Now()
		card.SetSignHook(nil)
		if code := diagnosis.Classify(err, diagnosis.Facts{}); code != diagnosis.CardRemoved {
			b.Fatalf("pull %d: %v (%v), want card_removed", i, code, err)
		}
		toError = append(toError, got.Sub(pulled))
		if err := bench.WaitCard(f.b.Readers[0], false, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		f.b.RemoveWait(b, 0) // the bench's own view of slot 0
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			if seen := bare.last(false); seen.After(pulled) {
				toBare = append(toBare, seen.Sub(pulled))
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("bare watcher did not see the removal")
			}
		}
		f.waitEvent(b, session.CardRemoved, f.b.Readers[0])
	}
	b.ReportMetric(msf(median(toError)), "ms-removal-to-card_removed-median")
	b.ReportMetric(msf(slices.Max(toError)), "ms-removal-to-card_removed-max")
	b.Logf("\n| card pulled mid-signature (%d pulls, 80-byte reader name) | median | max |\n|---|---|---|\n"+
		"| removal → caller gets card_removed | %.0f ms | %.0f ms |\n"+
		"| baseline, same run: removal → a bare PC/SC watcher sees it | %.0f ms | %.0f ms |",
		pulls, msf(median(toError)), msf(slices.Max(toError)), msf(median(toBare)), msf(slices.Max(toBare)))
}
