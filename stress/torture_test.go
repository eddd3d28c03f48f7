package stress_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/accounts"
	"github.com/cardmail/cardmail/bench"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// TortureCycles is the number of random card changes of TestTorture. It is a constant on purpose: the test proves
// the manager over this many changes; if it gets too slow, the numbers it prints say so.
const TortureCycles = 500

// tortureOpTimeout bounds one operation of a worker; an operation that takes longer is a hang.
const tortureOpTimeout = 20 * time.Second

// EnvSeed replays a torture run: set it to the seed a failed run logged.
const EnvSeed = "CARDMAIL_STRESS_SEED"

// opRecord is one operation a worker ran.
type opRecord struct {
	worker     string
	start, end time.Time
	code       diagnosis.Code
	err        error
}

// change is one card change: it began when the test touched the card and ended when the manager's event arrived.
// in says whether a card is in the reader afterwards.
type change struct {
	start, seen time.Time
	in          bool
}

// TestTorture runs TortureCycles random removals, reinsertions and swaps of the two bench cards in reader 0 while
// three workers use the card through one session manager (fed by reader.Watch): folder listings through
// accounts.Service (pooled IMAP connection), full diagnosis ladders (diagnosis.Run) and bare TLS handshakes with the
// manager's TLS hook, all against the demo mail server. It asserts, and prints:
//   - zero stale-handle failures: no operation that started after the manager saw the card inserted and ended
//     before the next change fails, whatever the code;
//   - while the card is out, and around a change, every failure is card_absent or card_removed;
//   - zero hangs: every operation ends within tortureOpTimeout, and none ends in a timeout code;
//   - no leaked agent processes, goroutines or file descriptors once the manager is closed.
func TestTorture(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(EnvSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvSeed, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with %s=%d)", seed, EnvSeed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	b := bench.Start(t)
	ids := []*bench.Identity{b.Alice, b.Bruno}
	ms, err := demo.StartMailServer(b.PKI, ids...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	dir := t.TempDir()
	ca := caFile(t, b, dir)
	prof := demo.DemoProfile(ms, ca, b.Alice)
	roots := x509.NewCertPool()
	roots.AddCert(b.PKI.CA)

	// The baseline: bench and mail server exist; no card, no manager, no watcher, no worker, no agent yet.
	base := snapshot()
	t.Logf("baseline: %d goroutines, %d fds, %d agents", base.goroutines, base.fds, base.agents)
	r := newRig(t, rigOptions{bench: b})

	svc := accounts.New(r.m, accounts.Dirs{Cache: dir + "/crl", Outbox: dir + "/outbox"}, 0)
	acct, err := svc.Account(prof)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu      sync.Mutex
		ops     []opRecord
		changes []change
	)
	slot := 0 // the card in reader 0
	start := time.Now()
	r.insert(t, slot)
	changes = append(changes, change{start: start, seen: time.Now(), in: true})

	workers := map[string]func(ctx context.Context) (diagnosis.Code, error){
		"folders": func(ctx context.Context) (diagnosis.Code, error) {
			fs, err := svc.Folders(ctx, prof)
			if err == nil && !slices.ContainsFunc(fs, func(f mail.Folder) bool { return f.Name == "INBOX" }) {
				err = fmt.Errorf("no INBOX in %d folders", len(fs))
				return diagnosis.Internal, err
			}
			return codeOf(err), err
		},
		"diagnosis": func(ctx context.Context) (diagnosis.Code, error) {
			rep := diagnosis.Run(ctx, r.m, diagnosis.Target{Account: acct, Protocol: diagnosis.ProtocolIMAP,
				Timeout: 10 * time.Second}, words.English)
			if rep.OK {
				return diagnosis.OK, nil
			}
			err := rep.Err
			if err == nil {
				err = errors.New(string(rep.Code))
			}
			return rep.Code, err
		},
		"handshake": func(ctx context.Context) (diagnosis.Code, error) {
			err := handshake(ctx, r.m, roots, ms.IMAPAddr)
			return codeOf(err), err
		},
	}
	wctx, stopWorkers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for name, op := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				ctx, cancel := context.WithTimeout(wctx, tortureOpTimeout)
				s := time.Now()
				code, err := op(ctx)
				e := time.Now()
				cancel()
				if wctx.Err() != nil {
					return // stopping: the cancellation is ours
				}
				mu.Lock()
				ops = append(ops, opRecord{worker: name, start: s, end: e, code: code, err: err})
				mu.Unlock()
				pause := 20 * time.Millisecond
				if err != nil {
					pause = 50 * time.Millisecond
				}
				time.Sleep(pause)
			}
		}()
	}

	// The cycles, on the test goroutine (the bench calls t.Fatal).
	in := true
	var actions = map[string]int{}
	cycleTimes := make([]time.Duration, 0, TortureCycles)
	for i := 0; i < TortureCycles; i++ {
		cs := time.Now()
		var act string
		switch {
		case !in:
			if rng.IntN(10) < 7 {
				act = "reinsert"
			} else {
				act, slot = "insert-other", 1-slot
			}
			r.insert(t, slot)
			in = true
		case rng.IntN(2) == 0:
			act = "remove"
			r.remove(t)
			in = false
		default:
			act, slot = "swap", 1-slot
			from := r.ev.mark()
			b.Swap(t, 0, slot)
			r.waitKind(t, from, session.CardInserted)
		}
		actions[act]++
		mu.Lock()
		changes = append(changes, change{start: cs, seen: time.Now(), in: in})
		mu.Unlock()
		cycleTimes = append(cycleTimes, time.Since(cs))
		if (i+1)%50 == 0 {
			mu.Lock()
			n := len(ops)
			mu.Unlock()
			t.Logf("cycle %d: %v elapsed, %d operations so far", i+1, time.Since(start).Round(time.Second), n)
		}
		// Let the workers use the new state a little before the next change (half the cycles: back-to-back
		// changes stress the event path, spaced ones let full operations complete).
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		}
	}
	total := time.Since(start)

	stopWorkers()
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	hung := false
	select {
	case <-waited:
	case <-time.After(tortureOpTimeout + 10*time.Second):
		hung = true
		t.Errorf("a worker did not return within %v of being stopped:\n%s", tortureOpTimeout+10*time.Second, goroutineDump())
	}
	stats := r.m.Stats()
	pool := svc.PoolStats()
	_ = svc.Close()
	r.stop()
	r.b.RemoveWait(t, 0)
	after, settled := settle(base, 15*time.Second)

	// Classify the operations against the change timeline.
	mu.Lock()
	defer mu.Unlock()
	type tally struct{ ok, failed, stale, outOfPlace, timeouts, slow int }
	per := map[string]*tally{}
	codes := map[string]map[diagnosis.Code]int{} // "stable-in" | "out" | "transition" -> code -> count
	for _, k := range []string{"stable-in", "out", "transition"} {
		codes[k] = map[diagnosis.Code]int{}
	}
	var problems []string
	var longest time.Duration
	for _, op := range ops {
		tl := per[op.worker]
		if tl == nil {
			tl = &tally{}
			per[op.worker] = tl
		}
		d := op.end.Sub(op.start)
		longest = max(longest, d)
		if d > tortureOpTimeout {
			tl.slow++
		}
		if op.err != nil && (isTimeout(op.err) || op.code == diagnosis.ConnectTimeout || op.code == diagnosis.TokenUnresponsive) {
			tl.timeouts++
		}
		if op.err == nil {
			tl.ok++
			continue
		}
		tl.failed++
		phase, cardIn := phaseOf(changes, op.start, op.end)
		codes[phase][op.code]++
		switch {
		case phase == "stable-in":
			tl.stale++
			problems = append(problems, fmt.Sprintf("%s: stale failure with the card in (%s, %v): %s %v", op.worker,
				op.start.Sub(start).Round(time.Millisecond), d.Round(time.Millisecond), op.code, op.err))
		case op.code != diagnosis.CardAbsent && op.code != diagnosis.CardRemoved:
			tl.outOfPlace++
			problems = append(problems, fmt.Sprintf("%s: %s failure (card in after: %t) at %s (%v): %s %v", op.worker, phase,
				cardIn, op.start.Sub(start).Round(time.Millisecond), d.Round(time.Millisecond), op.code, op.err))
		}
	}

	// The counts, always printed.
	sort.Slice(cycleTimes, func(i, j int) bool { return cycleTimes[i] < cycleTimes[j] })
	pct := func(p float64) time.Duration {
		return cycleTimes[int(p*float64(len(cycleTimes)-1))].Round(time.Millisecond)
	}
	t.Logf("cycles: %d in %v (mean %v, p50 %v, p95 %v, max %v); actions %v", len(cycleTimes), total.Round(time.Millisecond),
		(total / time.Duration(len(cycleTimes))).Round(time.Millisecond), pct(0.5), pct(0.95), pct(1), actions)
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	stale, outOfPlace, timeouts, slow := 0, 0, 0, 0
	for _, n := range names {
		tl := per[n]
		t.Logf("worker %-9s ok %5d failed %5d stale %d out-of-place %d timeouts %d hangs %d", n, tl.ok, tl.failed,
			tl.stale, tl.outOfPlace, tl.timeouts, tl.slow)
		stale += tl.stale
		outOfPlace += tl.outOfPlace
		timeouts += tl.timeouts
		slow += tl.slow
	}
	for _, k := range []string{"stable-in", "out", "transition"} {
		t.Logf("failure codes %-10s %v", k, codes[k])
	}
	t.Logf("longest operation %v; manager: %+v; pool: %+v; PIN prompts %d", longest.Round(time.Millisecond), stats, pool,
		r.prompts.Load())
	t.Logf("after close: %d goroutines (baseline %d), %d fds (baseline %d), %d agent processes", after.goroutines,
		base.goroutines, after.fds, base.fds, after.agents)
	t.Logf("TORTURE cycles=%d seconds=%.1f ops=%d stale=%d out_of_place=%d timeouts=%d hangs=%d agents_left=%d goroutines=%d/%d fds=%d/%d",
		len(cycleTimes), total.Seconds(), len(ops), stale, outOfPlace, timeouts, slow, after.agents, after.goroutines,
		base.goroutines, after.fds, base.fds)

	for i, p := range problems {
		if i == 20 {
			t.Errorf("... and %d more", len(problems)-20)
			break
		}
		t.Error(p)
	}
	if timeouts > 0 || slow > 0 || hung {
		t.Errorf("hangs: %d operations timed out, %d took longer than %v", timeouts, slow, tortureOpTimeout)
	}
	for _, tl := range per {
		if tl.ok == 0 {
			t.Errorf("a worker never succeeded: %+v", per)
			break
		}
	}
	if !settled {
		t.Errorf("resources not back to the baseline after close: %+v, baseline %+v\nagents: %v\nfds:\n%s\ngoroutines:\n%s",
			after, base, agentPIDs(), fdDump(), goroutineDump())
	}
}

// phaseOf says where an operation [s, e] falls on the change timeline: "transition" when it overlaps a change
// (from the moment the test touched the card to the manager's event), else "stable-in" or "out" by the state the
// last change left. cardIn is the state after the last change that began before e.
func phaseOf(changes []change, s, e time.Time) (phase string, cardIn bool) {
	in := false
	for _, c := range changes {
		if c.start.After(e) {
			break
		}
		in = c.in
		if !c.seen.Before(s) { // the change ended at or after the operation began, and began before it ended
			return "transition", in
		}
	}
	if in {
		return "stable-in", true
	}
	return "out", false
}

// TestPhaseOf checks the timeline classification the torture test relies on.
func TestPhaseOf(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	changes := []change{{at(0), at(100), true}, {at(1000), at(1400), false}, {at(2000), at(2300), true}}
	cases := []struct {
		s, e   int
		phase  string
		cardIn bool
	}{
		{150, 900, "stable-in", true},
		{50, 200, "transition", true},
		{900, 1100, "transition", false},
		{1200, 1300, "transition", false},
		{1500, 1900, "out", false},
		{1900, 2100, "transition", true},
		{2400, 5000, "stable-in", true},
		{1400, 1500, "transition", false}, // starts at the very instant the event arrived
	}
	for _, c := range cases {
		phase, in := phaseOf(changes, at(c.s), at(c.e))
		if phase != c.phase || in != c.cardIn {
			t.Errorf("[%d,%d]: %s %t, want %s %t", c.s, c.e, phase, in, c.phase, c.cardIn)
		}
	}
}
