package bridge_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// The unit fixture: a fake card (a session.Agent signing in software with a bench identity's key) in a session
// manager fed by hand, the demo's in-process mail server (Go TLS, client certificate required, SASL EXTERNAL) as
// the upstream, and a bridge in front of it. Unit tests only: the bench tests run pcscd, OpenSC, Dovecot and real
// clients.

const fakeReader = "Fake Reader 00 00"

var unitPKI = sync.OnceValues(func() (*unitIDs, error) {
	dir, err := os.MkdirTemp("", "bridge-unit-pki")
	if err != nil {
		return nil, err
	}
	pki, err := bench.NewPKI(dir, "Bridge Unit CA")
	if err != nil {
		return nil, err
	}
	alice, err := pki.Identity(bench.AliceName, bench.IdentityOptions{})
	if err != nil {
		return nil, err
	}
	bruno, err := pki.Identity(bench.BrunoName, bench.IdentityOptions{})
	if err != nil {
		return nil, err
	}
	return &unitIDs{pki: pki, alice: alice, bruno: bruno}, nil
})

type unitIDs struct {
	pki          *bench.PKI
	alice, bruno *bench.Identity
}

// fakeCard is the card in the fake reader; a nil identity means no card.
type fakeCard struct {
	mu      sync.Mutex
	id      *bench.Identity
	prompts atomic.Int32
	signs   atomic.Int32
}

func (f *fakeCard) identity() *bench.Identity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id
}

func (f *fakeCard) start(context.Context, string) (session.Agent, error) {
	return &fakeAgent{card: f, stop: make(chan struct{})}, nil
}

type fakeAgent struct {
	card   *fakeCard
	killed atomic.Bool
	stop   chan struct{} // closed by Kill: a fake has no process to wait for
}

func (a *fakeAgent) dead() error {
	if a.killed.Load() {
		return &token.OpError{Op: "fake", Err: token.ErrAgentKilled}
	}
	return nil
}

func (a *fakeAgent) Slots(context.Context) ([]token.Slot, error) {
	if a.card.identity() == nil {
		return nil, a.dead()
	}
	return []token.Slot{{ID: 1, Description: fakeReader, Token: token.TokenInfo{Label: "fake", Serial: "F1",
		LoginRequired: true}}}, a.dead()
}

func (a *fakeAgent) Certificates(context.Context, uint) ([]token.Certificate, error) {
	id := a.card.identity()
	if id == nil {
		return nil, a.dead()
	}
	c := token.Certificate{Slot: 1, TokenLabel: "fake", TokenSerial: "F1", ID: []byte{1}, DER: id.Cert.Raw,
		Cert: id.Cert, HasPrivateKey: true, KeyType: "RSA", KeyBits: 2048, SHA256: sha256.Sum256(id.Cert.Raw)}
	c.Verdict = token.Evaluate(&c, time.Now())
	return []token.Certificate{c}, a.dead()
}

func (a *fakeAgent) Mechanisms(context.Context, uint) (token.Mechanisms, error) {
	return token.Mechanisms{RSAPKCS: true, RSAPSS: true}, a.dead()
}

func (a *fakeAgent) TokenInfo(context.Context, uint) (token.TokenInfo, error) {
	return token.TokenInfo{Label: "fake", Serial: "F1", LoginRequired: true}, a.dead()
}

func (a *fakeAgent) Login(_ context.Context, _ uint, pin []byte) error {
	if string(pin) != bench.DefaultPIN {
		return &token.PINError{Reason: token.PINIncorrect, TriesLeft: -1}
	}
	return a.dead()
}

func (a *fakeAgent) Sign(_ context.Context, _ uint, _, digest []byte, s token.Scheme) ([]byte, error) {
	if err := a.dead(); err != nil {
		return nil, err
	}
	id := a.card.identity()
	if id == nil {
		return nil, &token.CKRError{Code: 0x32}
	}
	a.card.signs.Add(1)
	if s.Kind == token.PSS {
		return rsa.SignPSS(rand.Reader, id.Key, s.Hash, digest, &rsa.PSSOptions{SaltLength: s.SaltLength})
	}
	return rsa.SignPKCS1v15(rand.Reader, id.Key, s.Hash, digest)
}

func (a *fakeAgent) Close() error          { a.Kill(); return nil }
func (a *fakeAgent) Done() <-chan struct{} { return a.stop }
func (a *fakeAgent) Kill() {
	if !a.killed.Swap(true) {
		close(a.stop)
	}
}

// unitFixture is a bridge over the demo mail server with the fake card.
type unitFixture struct {
	ids    *unitIDs
	card   *fakeCard
	m      *session.Manager
	ms     *demo.MailServer
	acct   mail.Account
	b      *bridge.Bridge
	pw     string
	store  *bridge.Store
	events *eventLog
}

type unitOptions struct {
	pinCert bool // the account names Alice's certificate
}

func newUnitFixture(t *testing.T, opt unitOptions) *unitFixture {
	t.Helper()
	ids, err := unitPKI()
	if err != nil {
		t.Fatal(err)
	}
	f := &unitFixture{ids: ids, card: &fakeCard{id: ids.alice}, events: &eventLog{}}
	f.m = session.New(session.Config{Module: "fake", StartAgent: f.card.start,
		PINPrompt: func(ctx context.Context, req session.PINRequest) ([]byte, error) {
			f.card.prompts.Add(1)
			return []byte(bench.DefaultPIN), nil
		}})
	t.Cleanup(func() { f.m.Close() })
	f.m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
	f.ms, err = demo.StartMailServer(ids.pki, ids.alice, ids.bruno)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ms.Close() })
	pol, err := tlspolicy.New(tlspolicy.Default, []string{filepath.Join(ids.pki.Dir, "ca.pem")}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.acct = mail.Account{Address: bench.DefaultEmail(bench.AliceName), Auth: profile.LoginAuto, Policy: pol,
		IMAP: serverOf(t, f.ms.IMAPAddr, profile.Implicit), SMTP: serverOf(t, f.ms.SMTPAddr, profile.Implicit)}
	if opt.pinCert {
		sum := sha256.Sum256(ids.alice.Cert.Raw)
		f.acct.Cert = session.Selection{CertSHA256: fmt.Sprintf("%x", sum)}
	}
	f.store = &bridge.Store{Dir: t.TempDir()}
	if f.pw, err = f.store.Password(f.acct.Address); err != nil {
		t.Fatal(err)
	}
	tlsCfg, _, err := f.store.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	f.b, err = bridge.Start(bridge.Config{Account: f.acct, Dialer: &mail.Dialer{Sessions: f.m, Timeout: 5 * time.Second},
		IMAPAddr: "127.0.0.1:0", SMTPAddr: "127.0.0.1:0", Password: f.pw, TLS: tlsCfg, Lang: words.English,
		FailureDelay: 100 * time.Millisecond, IdleTimeout: 5 * time.Second, OnEvent: f.events.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.b.Close() })
	return f
}

// parallel runs fn(0..n-1) at once and returns their errors joined.
func parallel(n int, fn func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(i) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// localClient is one local connection: an IMAP session (login, LIST, SELECT, FETCH of the first message, logout)
// or, with smtpClient, an SMTP one (AUTH PLAIN, RSET, QUIT).
func localClient(imapAddr, smtpAddr, user, pw string, smtpClient bool) error {
	if smtpClient {
		sc, err := smtp.Dial(smtpAddr)
		if err != nil {
			return err
		}
		defer sc.Close()
		if err := sc.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
		if err := sc.Reset(); err != nil {
			return err
		}
		return sc.Quit()
	}
	cl, err := imapclient.DialInsecure(imapAddr, nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Login(user, pw).Wait(); err != nil {
		return fmt.Errorf("imap login: %w", err)
	}
	if _, err := cl.List("", "*", nil).Collect(); err != nil {
		return err
	}
	if _, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return err
	}
	if _, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect(); err != nil {
		return err
	}
	return cl.Logout().Wait()
}

// remove takes the card out (the manager is told as pcscd would tell it); insert puts id in.
func (f *unitFixture) remove() {
	f.card.mu.Lock()
	f.card.id = nil
	f.card.mu.Unlock()
	f.m.Apply(reader.Event{Kind: reader.CardRemoved, Reader: fakeReader})
}

func (f *unitFixture) insert(id *bench.Identity) {
	f.card.mu.Lock()
	f.card.id = id
	f.card.mu.Unlock()
	f.m.Apply(reader.Event{Kind: reader.CardInserted, Reader: fakeReader})
}

// eventLog collects the bridge's events.
type eventLog struct {
	mu  sync.Mutex
	evs []bridge.Event
}

func (l *eventLog) add(ev bridge.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) all() []bridge.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bridge.Event(nil), l.evs...)
}

func (l *eventLog) count(kind bridge.EventKind, code string) int {
	n := 0
	for _, ev := range l.all() {
		if ev.Kind == kind && (code == "" || string(ev.Code) == code) {
			n++
		}
	}
	return n
}

// waitFor polls cond up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawClient is a line-level IMAP/SMTP test client.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *rawClient) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// until reads lines until one starts with prefix and returns all of them.
func (c *rawClient) until(prefix string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, prefix) {
			return out
		}
	}
}

// closed reports whether the server closes the connection within d (reading and dropping what it sends).
func (c *rawClient) closed(d time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := c.r.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

// leakCheck counts goroutines and open file descriptors; call the returned func at the end: it fails t when more
// remain than before (after giving them time to end).
func leakCheck(t *testing.T) func() {
	t.Helper()
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var g, fd int
		for {
			g, fd = runtime.NumGoroutine(), openFDs(t)
			if g <= g0 && fd <= fd0 {
				break
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("leak: goroutines %d → %d, file descriptors %d → %d\n%s", g0, g, fd0, fd, buf[:n])
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("no leak: goroutines %d → %d, file descriptors %d → %d", g0, g, fd0, fd)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count file descriptors: %v", err)
	}
	return len(des)
}
