package stress_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
)

// TortureCycles is the number of random card changes of TestTorture. It is a constant on purpose: the test proves
// the manager over this many changes; if it gets too slow, the numbers it prints say so.
const TortureCycles = 400

// tortureOpTimeout bounds one operation of a worker; an operation that takes longer is a hang.
const tortureOpTimeout = 20 * time.Second

// tortureStableFloor is the least number of operations that must have run (and succeeded) entirely inside stable
// windows with their account's card in the reader, and tortureWorkerFloor the least for each worker: below them the
// run proved too little, whatever else it says. Measured runs did 398 and 479 (22 to 674 per worker; see the TORTURE
// and worker lines), so the floors leave room for the random schedule without letting an idle run pass.
const (
	tortureStableFloor = 150
	tortureWorkerFloor = 5
)

// EnvSeed replays a torture run: set it to the seed a failed run logged.
const EnvSeed = "CARDMAIL_STRESS_SEED"

// opRecord is one operation a worker ran for the account of card owner (0 Alice, 1 Bruno).
type opRecord struct {
	worker     string
	owner      int
	start, end time.Time
	code       diagnosis.Code
	err        error
}

// change is one card change in reader 0: it began when the test touched the card and ended when the manager's event
// arrived. prev and card are the cards in the reader before and after (0 Alice, 1 Bruno, -1 none).
type change struct {
	start, seen time.Time
	prev, card  int
}

// TestTorture runs TortureCycles random removals, reinsertions and swaps of the two bench cards in reader 0, named
// like a real OMNIKEY reader (80 bytes, longer than a PKCS#11 slot description) and signing like a real card
// (300 ms), while workers use the cards through one session manager (fed by reader.Watch) against the demo mail
// server, which resumes TLS sessions and reports who authenticated every handshake. Every account pins its
// certificate: folder listings for Alice's and for Bruno's account (app.Accounts, pooled IMAP connections),
// diagnosis ladders and bare TLS handshakes for Alice's. It asserts, and prints:
//   - every handshake the server accepted was authenticated by a card that was in the reader at that moment, and
//     never while no card was in (a resumed TLS session of the previous person counts as that person);
//   - every success of an account happened while its own card was in the reader at some moment of the operation;
//   - no failure at all for operations entirely inside a stable window with the account's card in (at least
//     tortureStableFloor of them ran); elsewhere only card_absent, card_removed or card_wrong_identity;
//   - PIN prompts at most the number of insertions;
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

	b := bench.StartOptions(t, bench.Options{FriendlyName: bench.LongFriendlyName, Card: bench.RealCard(bench.CardOptions{})})
	ids := []*bench.Identity{b.Alice, b.Bruno}
	ms, err := demo.StartMailServer(b.PKI, ids...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	var (
		mu         sync.Mutex
		ops        []opRecord
		changes    []change
		handshakes []demo.Handshake
	)
	ms.Observe(func(h demo.Handshake) {
		mu.Lock()
		handshakes = append(handshakes, h)
		mu.Unlock()
	})
	owner := map[string]int{}
	for i, id := range ids {
		owner[strings.ToLower(id.Cert.EmailAddresses[0])] = i
	}
	dir := t.TempDir()
	ca := caFile(t, b, dir)
	profs := make([]*profile.Profile, 2)
	sels := make([]session.Selection, 2)
	for i, id := range ids {
		fp := sha256.Sum256(id.Cert.Raw)
		profs[i] = demo.DemoProfile(ms, ca, id)
		profs[i].Name = fmt.Sprintf("account-%d", i)
		profs[i].CertSHA256 = hex.EncodeToString(fp[:])
		sels[i] = session.Selection{CertSHA256: profs[i].CertSHA256}
	}
	roots := x509.NewCertPool()
	roots.AddCert(b.PKI.CA)

	// The baseline: bench and mail server exist; no card, no manager, no watcher, no worker, no agent yet.
	base := snapshot()
	t.Logf("baseline: %d goroutines, %d fds, %d agents", base.goroutines, base.fds, base.agents)
	r := newRig(t, rigOptions{bench: b})

	svc := app.NewAccounts(app.OneManager(r.m), app.Dirs{Cache: dir + "/crl"}, 0, 0)
	acct, err := svc.Account(profs[0])
	if err != nil {
		t.Fatal(err)
	}

	slot := 0 // the card in reader 0
	start := time.Now()
	r.insert(t, slot)
	changes = append(changes, change{start: start, seen: time.Now(), prev: -1, card: slot})
	insertions := 1

	folders := func(who int) func(ctx context.Context) (diagnosis.Code, error) {
		return func(ctx context.Context) (diagnosis.Code, error) {
			fs, err := svc.Folders(ctx, profs[who])
			if err == nil && !slices.ContainsFunc(fs, func(f mail.Folder) bool { return f.Name == "INBOX" }) {
				err = fmt.Errorf("no INBOX in %d folders", len(fs))
				return diagnosis.Internal, err
			}
			return codeOf(err), err
		}
	}
	type worker struct {
		owner int
		op    func(ctx context.Context) (diagnosis.Code, error)
	}
	workers := map[string]worker{
		"folders-alice": {0, folders(0)},
		"folders-bruno": {1, folders(1)},
		"diagnosis": {0, func(ctx context.Context) (diagnosis.Code, error) {
			rep := diagnosis.Run(ctx, r.m, diagnosis.Target{Account: acct, Protocol: diagnosis.ProtocolIMAP,
				Timeout: 10 * time.Second})
			if rep.OK {
				return diagnosis.OK, nil
			}
			err := rep.Err
			if err == nil {
				err = errors.New(string(rep.Code))
			}
			return rep.Code, err
		}},
		"handshake": {0, func(ctx context.Context) (diagnosis.Code, error) {
			err := handshakeAs(ctx, r.m, roots, ms.IMAPAddr, sels[0])
			return codeOf(err), err
		}},
	}
	wctx, stopWorkers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for name, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				ctx, cancel := context.WithTimeout(wctx, tortureOpTimeout)
				s := time.Now()
				code, err := w.op(ctx)
				e := time.Now()
				cancel()
				if wctx.Err() != nil {
					return // stopping: the cancellation is ours
				}
				mu.Lock()
				ops = append(ops, opRecord{worker: name, owner: w.owner, start: s, end: e, code: code, err: err})
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
		prev := slot
		if !in {
			prev = -1
		}
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
			insertions++
		case rng.IntN(2) == 0:
			act = "remove"
			r.remove(t)
			in = false
		default:
			act, slot = "swap", 1-slot
			from := r.ev.mark()
			b.Swap(t, 0, slot)
			r.waitKind(t, from, session.CardInserted)
			insertions++
		}
		actions[act]++
		now := slot
		if !in {
			now = -1
		}
		mu.Lock()
		changes = append(changes, change{start: cs, seen: time.Now(), prev: prev, card: now})
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
			time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
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

	mu.Lock()
	defer mu.Unlock()
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// 1. Who the server saw, against the card that was in the reader.
	resumed, wrongHolder := 0, 0
	for _, h := range handshakes {
		who, known := owner[h.Address]
		// The client chose what to send (a signature, or a session to resume) between the server's accept and the
		// end of the handshake: the card that authenticated it must have been in at some moment of that span.
		cards, _ := cardsDuring(changes, h.Start, h.Time)
		if h.Resumed {
			resumed++
		}
		if !known || !cards[who] {
			wrongHolder++
			problem("server handshake at %s (accepted %s before) authenticated %q (resumed %t) while the reader held %v",
				h.Time.Sub(start).Round(time.Millisecond), h.Time.Sub(h.Start).Round(time.Millisecond), h.Address,
				h.Resumed, cardNames(cards))
		}
	}

	// 2. Every operation against the timeline.
	type tally struct{ ok, failed, stableOK, stableFail, wrongOK, outOfPlace, timeouts, slow int }
	per := map[string]*tally{}
	codes := map[string]map[diagnosis.Code]int{"stable-own": {}, "other": {}}
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
		cards, stable := cardsDuring(changes, op.start, op.end)
		stableOwn := stable && cards[op.owner]
		at := op.start.Sub(start).Round(time.Millisecond)
		if op.err == nil {
			tl.ok++
			if stableOwn {
				tl.stableOK++
			}
			if !cards[op.owner] {
				tl.wrongOK++
				problem("%s: succeeded for card %d's account while the reader held %v (%s, %v)", op.worker, op.owner,
					cardNames(cards), at, d.Round(time.Millisecond))
			}
			continue
		}
		tl.failed++
		if stableOwn {
			tl.stableFail++
			codes["stable-own"][op.code]++
			problem("%s: failure with the account's card in, stable (%s, %v): %s %v", op.worker, at,
				d.Round(time.Millisecond), op.code, op.err)
			continue
		}
		codes["other"][op.code]++
		switch op.code {
		case diagnosis.CardAbsent, diagnosis.CardRemoved, diagnosis.CardWrongIdentity:
		default:
			tl.outOfPlace++
			problem("%s: %s failure while the reader held %v (%s, %v): %v", op.worker, op.code, cardNames(cards), at,
				d.Round(time.Millisecond), op.err)
		}
	}

	// The counts, always printed.
	sort.Slice(cycleTimes, func(i, j int) bool { return cycleTimes[i] < cycleTimes[j] })
	pct := func(p float64) time.Duration {
		return cycleTimes[int(p*float64(len(cycleTimes)-1))].Round(time.Millisecond)
	}
	t.Logf("reader %q (%d bytes), card signing in %v", b.Readers[0], len(b.Readers[0]), bench.RealSignDelay)
	t.Logf("cycles: %d in %v (mean %v, p50 %v, p95 %v, max %v); actions %v; insertions %d", len(cycleTimes),
		total.Round(time.Millisecond), (total / time.Duration(len(cycleTimes))).Round(time.Millisecond), pct(0.5),
		pct(0.95), pct(1), actions, insertions)
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	stableOK, stableFail, wrongOK, outOfPlace, timeouts, slow := 0, 0, 0, 0, 0, 0
	for _, n := range names {
		tl := per[n]
		t.Logf("worker %-13s ok %5d (stable with its card %5d) failed %5d (stable with its card %d) wrong-card ok %d out-of-place %d timeouts %d hangs %d",
			n, tl.ok, tl.stableOK, tl.failed, tl.stableFail, tl.wrongOK, tl.outOfPlace, tl.timeouts, tl.slow)
		stableOK += tl.stableOK
		stableFail += tl.stableFail
		wrongOK += tl.wrongOK
		outOfPlace += tl.outOfPlace
		timeouts += tl.timeouts
		slow += tl.slow
	}
	for _, k := range []string{"stable-own", "other"} {
		t.Logf("failure codes %-10s %v", k, codes[k])
	}
	t.Logf("server handshakes %d (resumed %d), with a card not in the reader %d", len(handshakes), resumed, wrongHolder)
	t.Logf("longest operation %v; manager: %+v; pool: %+v; PIN prompts %d for %d insertions", longest.Round(time.Millisecond),
		stats, pool, r.prompts.Load(), insertions)
	t.Logf("after close: %d goroutines (baseline %d), %d fds (baseline %d), %d agent processes", after.goroutines,
		base.goroutines, after.fds, base.fds, after.agents)
	t.Logf("TORTURE cycles=%d seconds=%.1f ops=%d stable_ok=%d stable_fail=%d wrong_card_ok=%d wrong_holder=%d out_of_place=%d timeouts=%d hangs=%d prompts=%d insertions=%d agents_left=%d goroutines=%d/%d fds=%d/%d",
		len(cycleTimes), total.Seconds(), len(ops), stableOK, stableFail, wrongOK, wrongHolder, outOfPlace, timeouts, slow,
		r.prompts.Load(), insertions, after.agents, after.goroutines, base.goroutines, after.fds, base.fds)

	for i, p := range problems {
		if i == 20 {
			t.Errorf("... and %d more", len(problems)-20)
			break
		}
		t.Error(p)
	}
	if stableOK < tortureStableFloor {
		t.Errorf("only %d operations ran (and succeeded) entirely inside a stable window with their card in; the floor is %d",
			stableOK, tortureStableFloor)
	}
	if n := int(r.prompts.Load()); n > insertions {
		t.Errorf("PIN prompts %d > insertions %d", n, insertions)
	}
	if timeouts > 0 || slow > 0 || hung {
		t.Errorf("hangs: %d operations timed out, %d took longer than %v", timeouts, slow, tortureOpTimeout)
	}
	for n, tl := range per {
		if tl.stableOK < tortureWorkerFloor {
			t.Errorf("worker %s succeeded only %d times inside stable windows with its card (floor %d): %+v", n,
				tl.stableOK, tortureWorkerFloor, tl)
		}
	}
	if !settled {
		t.Errorf("resources not back to the baseline after close: %+v, baseline %+v\nagents: %v\nfds:\n%s\ngoroutines:\n%s",
			after, base, agentPIDs(), fdDump(), goroutineDump())
	}
}

// cardNames renders a set of cards for a message.
func cardNames(cards map[int]bool) string {
	var out []string
	for _, c := range []int{-1, 0, 1} {
		if cards[c] {
			out = append(out, map[int]string{-1: "no card", 0: "Alice's card", 1: "Bruno's card"}[c])
		}
	}
	return strings.Join(out, " or ")
}

// cardsDuring says which cards (0, 1, or -1 for none) may have been in the reader at some moment of [s, e] on the
// change timeline, and whether [s, e] lies entirely inside a stable window (no change in progress from the moment the
// test touched a card to the manager's event). During a change both the card before and the card after count.
func cardsDuring(changes []change, s, e time.Time) (cards map[int]bool, stable bool) {
	cards = map[int]bool{}
	stable = true
	cur := -1
	for _, c := range changes {
		if c.start.After(e) {
			break
		}
		if c.start.After(s) || !c.seen.Before(s) { // the change overlaps [s, e]
			cards[c.prev], cards[c.card] = true, true
			stable = false
		}
		cur = c.card
	}
	cards[cur] = true
	return cards, stable
}

// TestCardsDuring checks the timeline classification the torture test relies on.
func TestCardsDuring(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Alice in at 0-100, out at 1000-1400, Bruno in at 2000-2300, swap to Alice at 3000-3500.
	changes := []change{{at(0), at(100), -1, 0}, {at(1000), at(1400), 0, -1}, {at(2000), at(2300), -1, 1},
		{at(3000), at(3500), 1, 0}}
	cases := []struct {
		s, e   int
		cards  []int
		stable bool
	}{
		{150, 900, []int{0}, true},
		{50, 200, []int{-1, 0}, false},
		{900, 1100, []int{0, -1}, false},
		{1200, 1300, []int{0, -1}, false},
		{1500, 1900, []int{-1}, true},
		{1900, 2100, []int{-1, 1}, false},
		{2400, 2900, []int{1}, true},
		{2900, 3600, []int{1, 0}, false},
		{3600, 5000, []int{0}, true},
		{1400, 1500, []int{0, -1}, false}, // starts at the very instant the event arrived
	}
	for _, c := range cases {
		cards, stable := cardsDuring(changes, at(c.s), at(c.e))
		want := map[int]bool{}
		for _, x := range c.cards {
			want[x] = true
		}
		if stable != c.stable || len(cards) != len(want) {
			t.Errorf("[%d,%d]: %v %t, want %v %t", c.s, c.e, cards, stable, want, c.stable)
			continue
		}
		for x := range want {
			if !cards[x] {
				t.Errorf("[%d,%d]: %v, want %v", c.s, c.e, cards, want)
			}
		}
	}
}
