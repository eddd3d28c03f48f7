package session_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// certsOf lists the manager's certificates and returns Alice's and Bruno's.
func (f *fixture) certsOf(t testing.TB) (alice, bruno session.CardCert) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	certs, err := f.m.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		switch c.Cert.Subject.CommonName {
		case bench.AliceName:
			alice = c
		case bench.BrunoName:
			bruno = c
		}
	}
	return alice, bruno
}

func pin(c session.CardCert) session.Selection { return session.Selection{CertSHA256: c.Fingerprint()} }

// Two readers whose 80-byte names share their first 64 bytes (two OMNIKEY 3x21, or a dual-slot reader) get the same
// PKCS#11 slot description from OpenSC. With one person's card in each, each pinned account logs in as its own
// person, again and again, against a server that resumes TLS sessions (and would keep the first client certificate
// of a resumed session).
func TestTwoReadersSharingSlotDescription(t *testing.T) {
	f := newFixtureOpt(t, bench.Options{FriendlyName: bench.LongFriendlyName}, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS13)
	f.insert(t, 0, 0)
	f.insert(t, 1, 1)
	alice, bruno := f.certsOf(t)
	if alice.Cert == nil || bruno.Cert == nil {
		t.Fatalf("both cards must be listed: alice %v, bruno %v", alice.Cert != nil, bruno.Cert != nil)
	}
	// The floor of this test: the module really gave both slots the same description, cut from 80-byte names.
	if alice.SlotDescription != bruno.SlotDescription || len(f.b.Readers[0]) != 80 {
		t.Fatalf("slot descriptions %q and %q for readers %q: the bench did not reproduce two readers sharing a "+
			"description", alice.SlotDescription, bruno.SlotDescription, f.b.Readers)
	}
	t.Logf("both slots are described as %q (%d bytes)", alice.SlotDescription, len(alice.SlotDescription))
	const rounds = 6
	for i := 0; i < rounds; i++ {
		for _, who := range []struct {
			c    session.CardCert
			name string
		}{{alice, bench.AliceName}, {bruno, bench.BrunoName}} {
			got, err := f.connectAs(t, srv.addr, nil, pin(who.c), &session.Record{})
			if err != nil || got != "hello "+who.name+"\n" {
				t.Fatalf("round %d, account of %s: the server saw %q, %v", i, who.name, got, err)
			}
		}
	}
	if n := f.prompts.Load(); n != 2 {
		t.Errorf("PIN prompts = %d, want 2 (one per card)", n)
	}
	// Pulling Bruno's card cannot be told apart from pulling Alice's by the reader name PKCS#11 knows: both
	// sessions end (fail safe), and each account logs in as its own person again afterwards, with one PIN each.
	f.remove(t, 1)
	if got, err := f.connectAs(t, srv.addr, nil, pin(bruno), &session.Record{}); !errors.Is(err, session.ErrWrongIdentity) {
		t.Errorf("Bruno's account with Bruno's card out: %q %v, want ErrWrongIdentity", got, err)
	}
	if got, err := f.connectAs(t, srv.addr, nil, pin(alice), &session.Record{}); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("Alice's account after Bruno's card left: %q %v", got, err)
	}
	t.Logf("%d rounds × 2 accounts, each as its own person; %d PIN prompts in all", rounds, f.prompts.Load())
}

// An account pinned to Alice's certificate, with Bruno's card in the reader: it logs in as no one. No PIN is asked,
// the card is not touched (no VERIFY, no signature), and the code is card_wrong_identity. The same account works
// again once Alice's card is back. Run with the 80-byte reader names.
func TestPinnedAccountRefusesAnotherCard(t *testing.T) {
	f := newFixtureOpt(t, bench.Options{FriendlyName: bench.LongFriendlyName}, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS13)
	f.insert(t, 0, 0)
	alice, _ := f.certsOf(t)
	if got, err := f.connectAs(t, srv.addr, nil, pin(alice), &session.Record{}); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("Alice's account with Alice's card: %q %v", got, err)
	}
	f.drain()
	f.b.Swap(t, 0, 1)
	f.waitEvent(t, session.CardInserted, f.b.Readers[0])
	before := f.b.Cards[1].Counters()
	prompts := f.prompts.Load()
	for i := 0; i < 3; i++ {
		got, err := f.connectAs(t, srv.addr, nil, pin(alice), &session.Record{})
		if code := diagnosis.Classify(err, diagnosis.Facts{}); code != diagnosis.CardWrongIdentity {
			t.Fatalf("attempt %d with Bruno's card: %q, %v (%v), want card_wrong_identity", i, got, code, err)
		}
	}
	after := f.b.Cards[1].Counters()
	if after.Verify != before.Verify || after.Sign != before.Sign || f.prompts.Load() != prompts {
		t.Errorf("Bruno's card was used for Alice's account: VERIFY %d→%d, signatures %d→%d, prompts %d→%d",
			before.Verify, after.Verify, before.Sign, after.Sign, prompts, f.prompts.Load())
	}
	// Unpinned, the same manager logs in as whoever's card is in: the server sees Bruno, never Alice.
	if got, err := f.connect(t, srv.addr, nil, &session.Record{}); err != nil || got != "hello "+bench.BrunoName+"\n" {
		t.Fatalf("unpinned with Bruno's card: %q %v", got, err)
	}
	f.drain()
	f.b.Swap(t, 0, 0)
	f.waitEvent(t, session.CardInserted, f.b.Readers[0])
	if got, err := f.connectAs(t, srv.addr, nil, pin(alice), &session.Record{}); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("Alice's account with Alice's card back: %q %v", got, err)
	}
}

// A real card signs in 100-500 ms. With a 300 ms card and 8 concurrent full handshakes, every handshake succeeds,
// no agent is killed and the PIN is asked once, although the signatures queue for ~2.4 s in all: the per-call
// deadline (1 s here, tighter than the default 4 s so that a deadline counted from the queue would fail) counts from
// the moment the agent starts the signature.
func TestSlowCardConcurrentHandshakes(t *testing.T) {
	var agents []*token.Client
	var mu sync.Mutex
	f := newFixtureOpt(t, bench.Options{Card: bench.RealCard(bench.CardOptions{})}, nil)
	// The fixture's manager uses the default 4 s; this test needs its own with a 1 s signature deadline.
	m := session.New(session.Config{
		Module:      f.b.OpenSC,
		SignTimeout: time.Second,
		PINPrompt: func(context.Context, session.PINRequest) ([]byte, error) {
			f.prompts.Add(1)
			return []byte(bench.DefaultPIN), nil
		},
		StartAgent: func(ctx context.Context, module string) (session.Agent, error) {
			c, err := token.StartOptions(ctx, module, token.Options{SignTimeout: time.Second})
			if err == nil {
				mu.Lock()
				agents = append(agents, c)
				mu.Unlock()
			}
			return c, err
		},
	})
	defer m.Close()
	var ended atomic.Int32
	m.Subscribe(func(ev session.Event) {
		if ev.Kind == session.SessionEnded || ev.Kind == session.CardRemoved {
			ended.Add(1)
		}
	})
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS12)
	f.insert(t, 0, 0)
	// The server never resumes: every handshake signs.
	noResume := &tls.Config{ClientSessionCache: nil}
	const n = 8
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	names := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			base := noResume.Clone()
			base.RootCAs, base.ServerName = f.pool, "127.0.0.1"
			cfg, _, err := m.TLSConfig(ctx, base, session.Selection{}, &session.Record{})
			if err != nil {
				errs[i] = err
				return
			}
			cfg.ClientSessionCache = nil // a full handshake each: 8 signatures on the card
			c, err := (&tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}).DialContext(ctx, "tcp", srv.addr)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			names[i], errs[i] = bufio.NewReader(c).ReadString('\n')
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	ok := 0
	for i := range errs {
		if errs[i] != nil || names[i] != "hello "+bench.AliceName+"\n" {
			t.Errorf("handshake %d: %q %v", i, names[i], errs[i])
			continue
		}
		ok++
	}
	mu.Lock()
	started := len(agents)
	mu.Unlock()
	signs := f.b.Cards[0].Counters().Sign
	t.Logf("300 ms card, %d concurrent handshakes: %d ok in %v; %d card signatures, %d agents started, %d PIN prompts, %d sessions ended",
		n, ok, elapsed.Round(time.Millisecond), signs, started, f.prompts.Load(), ended.Load())
	if signs < n {
		t.Errorf("card signatures = %d, want ≥ %d (the floor: every handshake signed on the slow card)", signs, n)
	}
	if f.prompts.Load() != 1 || ended.Load() != 0 || started != 1 {
		t.Errorf("prompts %d (want 1), sessions ended %d (want 0), agents started %d (want 1: no agent killed)",
			f.prompts.Load(), ended.Load(), started)
	}
}

// Removal means logged out, end to end: when the manager tells its subscribers the card is gone, the agent process
// has exited (not only been signalled) and the authenticated connection tracked for the card is closed: the server
// sees its peer go away.
func TestRemovalLogsOutEndToEnd(t *testing.T) {
	var agents []*token.Client
	var mu sync.Mutex
	f := newFixtureOpt(t, bench.Options{FriendlyName: bench.LongFriendlyName}, func(a session.Agent) session.Agent {
		mu.Lock()
		agents = append(agents, a.(*token.Client))
		mu.Unlock()
		return a
	})
	srv := startHoldingServer(t, f)
	f.insert(t, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, id, err := f.m.TLSConfig(ctx, &tls.Config{RootCAs: f.pool, ServerName: "127.0.0.1"}, session.Selection{}, &session.Record{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	f.m.Track(id, raw)
	mu.Lock()
	var pids []int
	for _, a := range agents {
		select {
		case <-a.Done():
		default:
			pids = append(pids, a.PID())
		}
	}
	mu.Unlock()
	if len(pids) == 0 {
		t.Fatal("no live agent before the removal: nothing to check")
	}
	f.drain()
	f.b.RemoveWait(t, 0)
	f.waitEvent(t, session.CardRemoved, f.b.Readers[0])
	// At the moment subscribers hear of it: every agent process is gone, and the server saw the connection end.
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("agent %d still alive when the removal was announced", pid)
		}
	}
	select {
	case <-srv.closed:
	case <-time.After(2 * time.Second):
		t.Error("the tracked connection was not closed")
	}
	if id.Current() {
		t.Error("identity still current")
	}
	t.Logf("removal announced after %d agent(s) exited and the connection closed", len(pids))
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z' && b[i+2] != 'X'
		}
	}
	return true
}

// holdingServer accepts one TLS connection with a client certificate and keeps it open, closing closed when the
// client side goes away.
type holdingServer struct {
	addr   string
	closed chan struct{}
}

func startHoldingServer(t *testing.T, f *fixture) *holdingServer {
	t.Helper()
	srvCert, err := f.b.PKI.ServerCert("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(srvCert.CertPEM, srvCert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.pool})
	if err != nil {
		t.Fatal(err)
	}
	h := &holdingServer{addr: ln.Addr().String(), closed: make(chan struct{})}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 1)
		_, _ = c.Read(buf) // blocks until the client goes away (or the deadline)
		close(h.closed)
	}()
	t.Cleanup(func() { ln.Close() })
	return h
}
