package session_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// tlsServer is a TLS server on 127.0.0.1 that requires a client certificate from the test CA and answers each
// connection with the client's common name.
type tlsServer struct {
	ln   net.Listener
	addr string
	wg   sync.WaitGroup
}

func startTLSServer(t testing.TB, b *bench.Bench, minV, maxV uint16) *tlsServer {
	t.Helper()
	return startTLSServerFunc(t, b, minV, maxV, func(*tls.Conn) {})
}

// startTLSServerFunc is startTLSServer that calls then on each connection after its answer, before closing it.
func startTLSServerFunc(t testing.TB, b *bench.Bench, minV, maxV uint16, then func(*tls.Conn)) *tlsServer {
	t.Helper()
	srv, err := b.PKI.ServerCert("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b.PKI.CA)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MinVersion: minV, MaxVersion: maxV}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: ln, addr: ln.Addr().String()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				fmt.Fprintf(tc, "hello %s\n", tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
				then(tc)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// fixture is a manager fed by a live reader watcher on the bench, with a PIN prompt that counts its calls.
type fixture struct {
	b       *bench.Bench
	m       *session.Manager
	prompts atomic.Int32
	pin     atomic.Value // string
	events  chan session.Event
	pool    *x509.CertPool
	// onPrompt, when set, sees each PIN request (set it before the call that prompts).
	onPrompt func(session.PINRequest)
	// pinDur accumulates the nanoseconds spent in the PIN prompt (benchmarks exclude it).
	pinDur atomic.Int64
}

func newFixture(t testing.TB, wrap func(session.Agent) session.Agent) *fixture {
	t.Helper()
	return newFixtureOpt(t, bench.Options{}, wrap)
}

// newFixtureOpt is newFixture on a bench started with opt (long reader names, slow cards).
func newFixtureOpt(t testing.TB, opt bench.Options, wrap func(session.Agent) session.Agent) *fixture {
	t.Helper()
	b := bench.StartOptions(t, opt)
	f := &fixture{b: b, events: make(chan session.Event, 256), pool: x509.NewCertPool()}
	f.pool.AddCert(b.PKI.CA)
	f.pin.Store(bench.DefaultPIN)
	cfg := session.Config{
		Module: b.OpenSC,
		PINPrompt: func(ctx context.Context, req session.PINRequest) ([]byte, error) {
			defer func(start time.Time) { f.pinDur.Add(int64(time.Since(start))) }(time.Now())
			f.prompts.Add(1)
			if f.onPrompt != nil {
				f.onPrompt(req)
			}
			return []byte(f.pin.Load().(string)), nil
		},
	}
	if wrap != nil {
		cfg.StartAgent = func(ctx context.Context, module string) (session.Agent, error) {
			c, err := token.Start(ctx, module)
			if err != nil {
				return nil, err
			}
			return wrap(c), nil
		}
	}
	f.m = session.New(cfg)
	f.m.Subscribe(func(ev session.Event) {
		select {
		case f.events <- ev:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.m.Run(ctx, reader.Watch(ctx)) }()
	t.Cleanup(func() { cancel(); <-done; f.m.Close() })
	return f
}

// waitEvent waits until the manager has applied an event of kind for reader (any reader when "").
func (f *fixture) waitEvent(t testing.TB, kind session.EventKind, rd string) {
	t.Helper()
	f.waitEventTime(t, kind, rd)
}

// waitEventTime is waitEvent returning when the manager delivered the event.
func (f *fixture) waitEventTime(t testing.TB, kind session.EventKind, rd string) time.Time {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-f.events:
			if ev.Kind == kind && (rd == "" || ev.Reader == rd) {
				return ev.Time
			}
		case <-timeout:
			t.Fatalf("no %v event for %q within 10s", kind, rd)
		}
	}
}

func (f *fixture) drain() {
	for {
		select {
		case <-f.events:
		default:
			return
		}
	}
}

// insert puts card into reader slot and waits until the manager applied it.
func (f *fixture) insert(t testing.TB, card, slot int) {
	t.Helper()
	f.drain()
	f.b.InsertWait(t, card, slot)
	f.waitEvent(t, session.CardInserted, f.b.Readers[slot])
}

func (f *fixture) remove(t testing.TB, slot int) {
	t.Helper()
	f.drain()
	f.b.RemoveWait(t, slot)
	f.waitEvent(t, session.CardRemoved, f.b.Readers[slot])
}

// connect makes one TLS connection with the card and returns the name the server saw.
func (f *fixture) connect(t testing.TB, addr string, base *tls.Config, rec *session.Record) (string, error) {
	t.Helper()
	return f.connectAs(t, addr, base, session.Selection{}, rec)
}

// connectAs is connect with the certificate sel.
func (f *fixture) connectAs(t testing.TB, addr string, base *tls.Config, sel session.Selection, rec *session.Record) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if base == nil {
		base = &tls.Config{}
	}
	base.RootCAs = f.pool
	if base.ServerName == "" {
		base.ServerName = "127.0.0.1"
	}
	cfg, _, err := f.m.TLSConfig(ctx, base, sel, rec)
	if err != nil {
		return "", err
	}
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", rec.Explain(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", rec.Explain(err)
	}
	return line, nil
}

// The seed scenario of the bug report, automated: handshake, remove → card_absent at once, reinsert → one PIN →
// handshake, 20 cycles without a failure; then a swap makes the server see the other identity.
func TestSeedScenarioUnplugReplug(t *testing.T) {
	for _, name := range []string{bench.DefaultFriendlyName, bench.LongFriendlyName} {
		t.Run(fmt.Sprintf("reader name %d bytes", len(bench.ReaderNames(name)[0])), func(t *testing.T) {
			testSeedScenario(t, bench.Options{FriendlyName: name})
		})
	}
}

func testSeedScenario(t *testing.T, opt bench.Options) {
	f := newFixtureOpt(t, opt, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS12)
	f.insert(t, 0, 0)
	const cycles = 20
	failures := 0
	for i := 0; i < cycles; i++ {
		rec := &session.Record{}
		got, err := f.connect(t, srv.addr, nil, rec)
		if err != nil || got != "hello "+bench.AliceName+"\n" {
			failures++
			t.Errorf("cycle %d: handshake with the card: %q, %v", i, got, err)
		}
		if fa := rec.Facts(); !fa.CertRequested || fa.CertSentSHA256 == "" {
			t.Errorf("cycle %d: record %+v", i, fa)
		}
		f.remove(t, 0)
		start := time.Now()
		_, err = f.connect(t, srv.addr, nil, &session.Record{})
		if code := diagnosis.Classify(err, diagnosis.Facts{}); code != diagnosis.CardAbsent {
			failures++
			t.Errorf("cycle %d: card out: got %v (%v), want card_absent", i, code, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Logf("cycle %d: card_absent took %v", i, d) // informative; speed is measured by the benchmark
		}
		f.insert(t, 0, 0)
	}
	rec := &session.Record{}
	if _, err := f.connect(t, srv.addr, nil, rec); err != nil {
		t.Fatalf("after %d cycles: %v", cycles, err)
	}
	// One PIN prompt per card generation: the first insertion plus one per cycle.
	if got := f.prompts.Load(); got != cycles+1 {
		t.Errorf("PIN prompts = %d, want %d", got, cycles+1)
	}
	t.Logf("%d cycles, %d failures, %d PIN prompts, stats %+v", cycles, failures, f.prompts.Load(), f.m.Stats())

	f.drain()
	f.b.Swap(t, 0, 1)
	f.waitEvent(t, session.CardInserted, f.b.Readers[0])
	got, err := f.connect(t, srv.addr, nil, &session.Record{})
	if err != nil || got != "hello "+bench.BrunoName+"\n" {
		t.Fatalf("after swap the server saw %q, %v; want Bruno", got, err)
	}
}

// A TLS 1.3 server resumes sessions: after a card change the cached session must not be offered again.
func TestCardChangeDropsTLSSessionCache(t *testing.T) {
	for _, name := range []string{bench.DefaultFriendlyName, bench.LongFriendlyName} {
		t.Run(fmt.Sprintf("reader name %d bytes", len(bench.ReaderNames(name)[0])), func(t *testing.T) {
			testCardChangeDropsTLSSessionCache(t, bench.Options{FriendlyName: name})
		})
	}
}

func testCardChangeDropsTLSSessionCache(t *testing.T, opt bench.Options) {
	f := newFixtureOpt(t, opt, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS13, tls.VersionTLS13)
	f.insert(t, 0, 0)
	for i := 0; i < 2; i++ {
		rec := &session.Record{}
		if got, err := f.connect(t, srv.addr, nil, rec); err != nil || got != "hello "+bench.AliceName+"\n" {
			t.Fatalf("connection %d: %q %v", i, got, err)
		}
		// Within one card generation resumption keeps working: the second connection resumes, without a signature.
		if fa := rec.Facts(); i == 1 && (!fa.ResumeOffered || fa.Signatures != 0) {
			t.Errorf("second connection of the same card generation did not resume: %+v", fa)
		}
	}
	f.drain()
	f.b.Swap(t, 0, 1)
	f.waitEvent(t, session.CardInserted, f.b.Readers[0])
	rec := &session.Record{}
	got, err := f.connect(t, srv.addr, nil, rec)
	if err != nil || got != "hello "+bench.BrunoName+"\n" {
		t.Fatalf("after swap: %q %v (a resumed session would still say Alice)", got, err)
	}
	if fa := rec.Facts(); fa.Signatures != 1 {
		t.Errorf("signatures after swap = %d, want 1 (full handshake with the new card)", fa.Signatures)
	}
}

// A card pulled while it signs: the caller gets a typed error within 5 s, the process stays responsive, and after
// reinsertion a handshake works without restarting anything.
func TestCardPulledDuringSignature(t *testing.T) {
	f := newFixture(t, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS12)
	f.insert(t, 0, 0)
	if _, err := f.connect(t, srv.addr, nil, &session.Record{}); err != nil {
		t.Fatal(err)
	}
	card := f.b.Cards[0]
	var once sync.Once
	card.SetSignHook(func() {
		once.Do(func() { go card.Remove() }) // pull the card while the signature is in flight
		time.Sleep(50 * time.Millisecond)
	})
	// Force a full handshake with a signature: a new card generation is not needed, only no resumption (TLS 1.2
	// server without tickets would resume by ID; use a fresh session cache key by a new server name).
	start := time.Now()
	ticker := time.NewTicker(10 * time.Millisecond) // the process stays responsive: this goroutine keeps ticking
	var ticks atomic.Int32
	go func() {
		for range ticker.C {
			ticks.Add(1)
		}
	}()
	_, err := f.connect(t, srv.addr, &tls.Config{ServerName: "localhost"}, &session.Record{})
	elapsed := time.Since(start)
	ticker.Stop()
	card.SetSignHook(nil)
	if err == nil {
		t.Fatal("handshake succeeded although the card was pulled mid-signature")
	}
	if code := diagnosis.Classify(err, diagnosis.Facts{}); code != diagnosis.CardRemoved {
		t.Fatalf("error %v (%v): want card_removed", code, err)
	}
	code := diagnosis.CardRemoved
	if elapsed > 5*time.Second {
		t.Errorf("typed error after %v, want within 5 s", elapsed)
	}
	if ticks.Load() == 0 {
		t.Error("process was not responsive while the signature hung")
	}
	t.Logf("card pulled mid-signature: %v after %v (%d ticks)", code, elapsed, ticks.Load())
	// pcscd must see the removal before the reinsertion counts as a new card.
	if err := bench.WaitCard(f.b.Readers[0], false, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f.insert(t, 0, 0)
	if got, err := f.connect(t, srv.addr, nil, &session.Record{}); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("after reinsertion: %q %v", got, err)
	}
}

// The card leaves just before a signature, inside pcscd's 400 ms poll: OpenSC 0.23 then blocks in C_Sign forever
// (upstream issue 2707). The agent is killed at its deadline and the caller gets a typed error within 5 s.
func TestCardPulledJustBeforeSignature(t *testing.T) {
	f := newFixture(t, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS12)
	f.insert(t, 0, 0)
	rec := &session.Record{}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfg, _, err := f.m.TLSConfig(ctx, &tls.Config{RootCAs: f.pool, ServerName: "127.0.0.1"}, session.Selection{}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.b.Cards[0].Remove(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.addr, cfg)
	if err == nil {
		c.Close()
		t.Fatal("handshake succeeded with the card out")
	}
	err = rec.Explain(err)
	elapsed := time.Since(start)
	code := diagnosis.Classify(err, diagnosis.Facts{})
	if code != diagnosis.CardRemoved && code != diagnosis.TokenUnresponsive {
		t.Fatalf("got %v (%v), want card_removed or token_unresponsive", code, err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("typed error after %v, want within 5 s", elapsed)
	}
	t.Logf("card pulled before the signature: %v after %v", code, elapsed)
	if err := bench.WaitCard(f.b.Readers[0], false, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f.insert(t, 0, 0)
	if got, err := f.connect(t, srv.addr, nil, &session.Record{}); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("after reinsertion: %q %v", got, err)
	}
}

// A wrong PIN reaches the card exactly once, the error carries the tries left, and nothing retries.
func TestWrongPINIsNeverRetried(t *testing.T) {
	f := newFixture(t, nil)
	f.pin.Store("000000")
	f.insert(t, 0, 0)
	before := f.b.Cards[0].Counters()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := f.m.Identity(ctx, session.Selection{})
	var pe *token.PINError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *token.PINError", err)
	}
	after := f.b.Cards[0].Counters()
	if n := after.VerifyWrong - before.VerifyWrong; n != 1 {
		t.Errorf("wrong VERIFY commands reaching the card = %d, want exactly 1", n)
	}
	if n := after.Verify - before.Verify; n != 1 {
		t.Errorf("VERIFY commands with a PIN = %d, want 1", n)
	}
	if got := f.b.Cards[0].TriesLeft(); got != 2 {
		t.Errorf("card tries left = %d, want 2", got)
	}
	if pe.TriesLeft != -1 && pe.TriesLeft != 2 && !pe.CountLow {
		t.Errorf("PINError does not carry the tries state: %+v", pe)
	}
	if code := diagnosis.Classify(err, diagnosis.Facts{}); code != diagnosis.PINIncorrect {
		t.Errorf("code %v, want pin_incorrect", code)
	}
	if f.prompts.Load() != 1 {
		t.Errorf("prompts = %d, want 1", f.prompts.Load())
	}
	if got := f.b.Cards[0].Counters().VerifyWrong - before.VerifyWrong; got != 1 {
		t.Errorf("wrong VERIFY after one attempt = %d", got)
	}
	// A second wrong PIN, typed by the person on a new attempt: the token now says "final try", and the error and the
	// next prompt carry it.
	_, err = f.m.Identity(ctx, session.Selection{})
	if !errors.As(err, &pe) || pe.TriesLeft != 1 {
		t.Fatalf("second wrong PIN: %v (%+v), want a PINError with 1 try left", err, pe)
	}
	var lastReq session.PINRequest
	f.onPrompt = func(r session.PINRequest) { lastReq = r }
	// The right PIN on the next explicit attempt works and resets the counter.
	f.pin.Store(bench.DefaultPIN)
	if _, err := f.m.Identity(ctx, session.Selection{}); err != nil {
		t.Fatal(err)
	}
	if got := f.b.Cards[0].TriesLeft(); got != 3 {
		t.Errorf("tries after the right PIN = %d, want 3", got)
	}
	if !lastReq.FinalTry || lastReq.TriesLeft != 1 {
		t.Errorf("the prompt before the last try was not warned: %+v", lastReq)
	}
}

// noPSS hides RSA-PSS from the manager, like an older CPS3 card whose module offers PKCS#1 v1.5 only.
type noPSS struct {
	session.Agent
	pssSigns atomic.Int32
}

func (n *noPSS) Mechanisms(ctx context.Context, slot uint) (token.Mechanisms, error) {
	m, err := n.Agent.Mechanisms(ctx, slot)
	m.RSAPSS = false
	return m, err
}

func (n *noPSS) Sign(ctx context.Context, slot uint, id, digest []byte, s token.Scheme) ([]byte, error) {
	if s.Kind == token.PSS {
		n.pssSigns.Add(1)
		return nil, errors.New("noPSS: CKM_RSA_PKCS_PSS not supported")
	}
	return n.Agent.Sign(ctx, slot, id, digest, s)
}

func TestTokenWithoutPSS(t *testing.T) {
	var wrapped []*noPSS
	var mu sync.Mutex
	f := newFixture(t, func(a session.Agent) session.Agent {
		n := &noPSS{Agent: a}
		mu.Lock()
		wrapped = append(wrapped, n)
		mu.Unlock()
		return n
	})
	f.insert(t, 0, 0)

	// A server that allows 1.2 and 1.3: the handshake happens in TLS 1.2 with PKCS#1 v1.5.
	both := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS13)
	rec := &session.Record{}
	if got, err := f.connect(t, both.addr, nil, rec); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("no-PSS card against a 1.2/1.3 server: %q %v", got, err)
	}
	fa := rec.Facts()
	if !fa.VersionCapped || fa.Scheme == "" || fa.Scheme[:3] == "RSA" {
		t.Errorf("record %+v: want version capped and a PKCS#1 v1.5 scheme", fa)
	}
	mu.Lock()
	for _, n := range wrapped {
		if n.pssSigns.Load() != 0 {
			t.Errorf("a PSS signature was requested from a token without PSS")
		}
	}
	mu.Unlock()

	// A TLS 1.3-only server: the error is card_mechanism_unsupported, not a bare handshake failure.
	only13 := startTLSServer(t, f.b, tls.VersionTLS13, tls.VersionTLS13)
	_, err := f.connect(t, only13.addr, nil, &session.Record{})
	if code := diagnosis.Classify(err, diagnosis.Facts{}); code != diagnosis.CardMechanismUnsupported {
		t.Fatalf("TLS 1.3-only server: %v (%v), want card_mechanism_unsupported", code, err)
	}
}

// pcscd killed and restarted: the manager sees the service go down (everything invalidated) and come back, and a
// handshake works afterwards without a new manager or watcher.
func TestPCSCDRestart(t *testing.T) {
	f := newFixture(t, nil)
	srv := startTLSServer(t, f.b, tls.VersionTLS12, tls.VersionTLS12)
	f.insert(t, 0, 0)
	if _, err := f.connect(t, srv.addr, nil, &session.Record{}); err != nil {
		t.Fatal(err)
	}
	f.drain()
	if err := bench.StopPCSCD(); err != nil {
		t.Fatal(err)
	}
	f.waitEvent(t, session.ServiceDown, "")
	if err := bench.EnsurePCSCD(); err != nil {
		t.Fatal(err)
	}
	// The card's vpcd connection died with pcscd; the bench puts it back.
	f.b.Cards[0].Remove()
	f.insert(t, 0, 0)
	if got, err := f.connect(t, srv.addr, nil, &session.Record{}); err != nil || got != "hello "+bench.AliceName+"\n" {
		t.Fatalf("after pcscd restart: %q %v", got, err)
	}
}

// Goroutines settle back after the fixtures of a test are gone (no leak from watchers or agents).
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		t.Run("cycle", func(t *testing.T) {
			f := newFixture(t, nil)
			f.insert(t, 0, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := f.m.Identity(ctx, session.Selection{}); err != nil {
				t.Fatal(err)
			}
			f.remove(t, 0)
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
