package session_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// fakeToken is one card as fake agents see it; fakeAgent is a session.Agent over it. Unit tests only: the bench
// tests run the real chain.
type fakeToken struct {
	mu      sync.Mutex
	key     *rsa.PrivateKey
	cert    token.Certificate
	info    token.TokenInfo
	pin     string
	logins  int
	signErr error
	started int
	killed  int
	// hangSlots makes Slots block until the agent is killed.
	hangSlots bool
}

const fakeReader = "Fake Reader 00"

func newFakeToken(t *testing.T) *fakeToken {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Dr Fake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := x509.ParseCertificate(der)
	c := token.Certificate{Slot: 1, TokenLabel: "fake", TokenSerial: "F1", ID: []byte{1}, DER: der, Cert: parsed,
		HasPrivateKey: true, KeyType: "RSA", KeyBits: 2048, SHA256: sha256.Sum256(der)}
	c.Verdict = token.Evaluate(&c, time.Now())
	return &fakeToken{key: key, cert: c, pin: "1234",
		info: token.TokenInfo{Label: "fake", Serial: "F1", LoginRequired: true}}
}

type fakeAgent struct {
	tok    *fakeToken
	killed atomic.Bool
	stop   chan struct{} // closed by Kill
}

func (f *fakeToken) start(context.Context, string) (session.Agent, error) {
	f.mu.Lock()
	f.started++
	f.mu.Unlock()
	return &fakeAgent{tok: f, stop: make(chan struct{})}, nil
}

func (a *fakeAgent) dead() error {
	if a.killed.Load() {
		return &token.OpError{Op: "fake", Err: token.ErrAgentKilled}
	}
	return nil
}

func (a *fakeAgent) Slots(context.Context) ([]token.Slot, error) {
	a.tok.mu.Lock()
	hang := a.tok.hangSlots
	a.tok.mu.Unlock()
	if hang {
		<-a.stop // a module stuck on a vanished card: only Kill ends the call
	}
	if err := a.dead(); err != nil {
		return nil, err
	}
	return []token.Slot{{ID: 1, Description: fakeReader, Token: a.tok.info}}, nil
}

func (a *fakeAgent) Certificates(context.Context, uint) ([]token.Certificate, error) {
	if err := a.dead(); err != nil {
		return nil, err
	}
	return []token.Certificate{a.tok.cert}, nil
}

func (a *fakeAgent) Mechanisms(context.Context, uint) (token.Mechanisms, error) {
	return token.Mechanisms{RSAPKCS: true, RSAPSS: true}, a.dead()
}

func (a *fakeAgent) TokenInfo(context.Context, uint) (token.TokenInfo, error) {
	a.tok.mu.Lock()
	defer a.tok.mu.Unlock()
	return a.tok.info, a.dead()
}

func (a *fakeAgent) Login(_ context.Context, _ uint, pin []byte) error {
	a.tok.mu.Lock()
	defer a.tok.mu.Unlock()
	a.tok.logins++
	if string(pin) != a.tok.pin {
		a.tok.info.UserPINCountLow = true
		return &token.PINError{Reason: token.PINIncorrect, TriesLeft: -1, CountLow: true}
	}
	return nil
}

func (a *fakeAgent) Sign(_ context.Context, _ uint, _, digest []byte, s token.Scheme) ([]byte, error) {
	if err := a.dead(); err != nil {
		return nil, err
	}
	a.tok.mu.Lock()
	err := a.tok.signErr
	a.tok.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if s.Kind == token.PSS {
		return rsa.SignPSS(rand.Reader, a.tok.key, s.Hash, digest, &rsa.PSSOptions{SaltLength: s.SaltLength})
	}
	return rsa.SignPKCS1v15(rand.Reader, a.tok.key, s.Hash, digest)
}

func (a *fakeAgent) Close() error { a.Kill(); return nil }

// Done is closed by Kill: a fake has no process to wait for.
func (a *fakeAgent) Done() <-chan struct{} { return a.stop }

func (a *fakeAgent) Kill() {
	if !a.killed.Swap(true) {
		close(a.stop)
		a.tok.mu.Lock()
		a.tok.killed++
		a.tok.mu.Unlock()
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func newManager(tok *fakeToken, prompt session.PINPrompt) *session.Manager {
	return session.New(session.Config{StartAgent: tok.start, PINPrompt: prompt})
}

func pinPrompt(pin string, calls *atomic.Int32) session.PINPrompt {
	return func(ctx context.Context, req session.PINRequest) ([]byte, error) {
		calls.Add(1)
		return []byte(pin), nil
	}
}

func sign(t *testing.T, id *session.Identity) error {
	t.Helper()
	d := sha256.Sum256([]byte("x"))
	_, err := id.Signer().Sign(rand.Reader, d[:], crypto.SHA256)
	return err
}

func TestRemovalInvalidatesEverything(t *testing.T) {
	tok := newFakeToken(t)
	var prompts atomic.Int32
	m := newManager(tok, pinPrompt("1234", &prompts))
	defer m.Close()
	var events []session.Event
	var mu sync.Mutex
	m.Subscribe(func(ev session.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() })

	m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
	ctx := context.Background()
	id, err := m.Identity(ctx, session.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sign(t, id); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	m.Track(id, closerFunc(func() error { close(closed); return nil }))

	m.Apply(reader.Event{Kind: reader.CardRemoved, Reader: fakeReader})
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("tracked connection not closed on removal")
	}
	if id.Current() {
		t.Error("identity still current after removal")
	}
	if err := sign(t, id); !errors.Is(err, session.ErrCardRemoved) {
		t.Errorf("sign after removal: %v, want ErrCardRemoved", err)
	}
	if tok.killed == 0 {
		t.Error("agent not killed on removal")
	}
	if _, err := m.Identity(ctx, session.Selection{}); !errors.Is(err, session.ErrCardAbsent) {
		t.Errorf("identity with the card out: %v, want ErrCardAbsent", err)
	}
	started := tok.started
	if _, err := m.Identity(ctx, session.Selection{}); !errors.Is(err, session.ErrCardAbsent) || tok.started != started {
		t.Errorf("card_absent must not start an agent (started %d → %d)", started, tok.started)
	}
	m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
	id2, err := m.Identity(ctx, session.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sign(t, id2); err != nil {
		t.Fatal(err)
	}
	if id2.Generation == id.Generation {
		t.Error("new card generation expected")
	}
	if prompts.Load() != 2 {
		t.Errorf("PIN prompts = %d, want 2 (one per card generation)", prompts.Load())
	}
	want := []session.EventKind{session.CardInserted, session.LoggedIn, session.CardRemoved, session.CardInserted, session.LoggedIn}
	// Subscribers are called from the manager's dispatcher goroutine: wait until it has delivered them all.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n >= len(want) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []session.EventKind
	for _, ev := range events {
		kinds = append(kinds, ev.Kind)
	}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
}

func TestConcurrentCallersShareOneLogin(t *testing.T) {
	tok := newFakeToken(t)
	var prompts atomic.Int32
	m := newManager(tok, pinPrompt("1234", &prompts))
	defer m.Close()
	m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := m.Identity(context.Background(), session.Selection{})
			if err == nil {
				err = sign(t, id)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if prompts.Load() != 1 || tok.logins != 1 {
		t.Errorf("prompts %d, logins %d: want 1 and 1", prompts.Load(), tok.logins)
	}
}

func TestPINOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		prompt     session.PINPrompt
		locked     bool
		wantLogins int
		check      func(error) bool
	}{
		{"wrong PIN is not retried", func(context.Context, session.PINRequest) ([]byte, error) { return []byte("0000"), nil },
			false, 1, func(err error) bool { var pe *token.PINError; return errors.As(err, &pe) && pe.CountLow }},
		{"cancel", func(context.Context, session.PINRequest) ([]byte, error) { return nil, session.ErrPINCancelled },
			false, 0, func(err error) bool { return errors.Is(err, session.ErrPINCancelled) }},
		{"locked card is not prompted", func(context.Context, session.PINRequest) ([]byte, error) {
			t.Error("prompted for a locked card")
			return nil, nil
		}, true, 0, func(err error) bool {
			var pe *token.PINError
			return errors.As(err, &pe) && pe.Reason == token.PINLocked
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := newFakeToken(t)
			tok.info.UserPINLocked = tt.locked
			m := newManager(tok, tt.prompt)
			defer m.Close()
			_, err := m.Identity(context.Background(), session.Selection{})
			if !tt.check(err) {
				t.Errorf("error %v", err)
			}
			if tok.logins != tt.wantLogins {
				t.Errorf("logins %d, want %d", tok.logins, tt.wantLogins)
			}
		})
	}
}

// A PKCS#11 "card changed" error during a signature ends the generation exactly like a reader event.
func TestCardChangedErrorInvalidates(t *testing.T) {
	tok := newFakeToken(t)
	var prompts atomic.Int32
	m := newManager(tok, pinPrompt("1234", &prompts))
	defer m.Close()
	id, err := m.Identity(context.Background(), session.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	tok.signErr = &token.CKRError{Op: "C_Sign", Code: 0x32} // CKR_DEVICE_REMOVED
	err = sign(t, id)
	if !errors.Is(err, session.ErrCardRemoved) {
		t.Fatalf("got %v, want ErrCardRemoved", err)
	}
	var ce *session.CardError
	if !errors.As(err, &ce) || ce.Reader != fakeReader {
		t.Errorf("no CardError with the reader: %v", err)
	}
	if id.Current() {
		t.Error("generation not ended")
	}
	tok.signErr = nil
	id2, err := m.Identity(context.Background(), session.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sign(t, id2); err != nil {
		t.Fatal(err)
	}
	if prompts.Load() != 2 {
		t.Errorf("prompts %d, want 2", prompts.Load())
	}
}

func TestSelectionByFingerprint(t *testing.T) {
	tok := newFakeToken(t)
	var prompts atomic.Int32
	m := newManager(tok, pinPrompt("1234", &prompts))
	defer m.Close()
	fp := tok.cert.SHA256
	hexFP := ""
	for i, b := range fp {
		if i > 0 {
			hexFP += ":"
		}
		hexFP += string("0123456789ABCDEF"[b>>4]) + string("0123456789ABCDEF"[b&15])
	}
	if _, err := m.Identity(context.Background(), session.Selection{CertSHA256: hexFP}); err != nil {
		t.Fatalf("selection by colon fingerprint: %v", err)
	}
	if _, err := m.Identity(context.Background(), session.Selection{CertSHA256: "00ff"}); !errors.Is(err, session.ErrNoUsableCertificate) {
		t.Fatalf("unknown fingerprint: %v, want ErrNoUsableCertificate", err)
	}
}

// A card event kills an agent that is in the middle of a call (the listing here), so the caller gets an answer at
// once instead of waiting for the token's deadline.
func TestCardEventKillsBusyAgent(t *testing.T) {
	tok := newFakeToken(t)
	var prompts atomic.Int32
	m := newManager(tok, pinPrompt("1234", &prompts))
	defer m.Close()
	m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
	tok.mu.Lock()
	tok.hangSlots = true
	tok.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := m.Certificates(context.Background())
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tok.mu.Lock()
		started := tok.started
		tok.mu.Unlock()
		if started > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listing agent never started")
		}
	}
	m.Apply(reader.Event{Kind: reader.CardRemoved, Reader: fakeReader})
	select {
	case err := <-done:
		if !errors.Is(err, session.ErrCardAbsent) {
			t.Fatalf("listing interrupted by the removal: %v, want ErrCardAbsent", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the busy agent was not killed by the card event")
	}
}

// After a refused PIN the next prompt for that card says so, so that a prompt that is not a person can refuse to
// repeat it; a success clears it.
func TestPromptToldOfRefusedPIN(t *testing.T) {
	tok := newFakeToken(t)
	var reqs []session.PINRequest
	pin := "0000"
	m := newManager(tok, func(_ context.Context, req session.PINRequest) ([]byte, error) {
		reqs = append(reqs, req)
		return []byte(pin), nil
	})
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Identity(ctx, session.Selection{}); err == nil {
		t.Fatal("wrong PIN accepted")
	}
	pin = "1234"
	if _, err := m.Identity(ctx, session.Selection{}); err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[0].Refused || !reqs[1].Refused {
		t.Fatalf("requests %+v: want the second marked Refused", reqs)
	}
	m.Apply(reader.Event{Kind: reader.CardRemoved, Reader: fakeReader})
	m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
	if _, err := m.Identity(ctx, session.Selection{}); err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 3 || reqs[2].Refused {
		t.Fatalf("after a success the refusal must be forgotten: %+v", reqs[2])
	}
}
