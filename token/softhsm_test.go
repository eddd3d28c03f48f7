package token_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/token"
)

const (
	alicePIN = "1234"
	hangEnv  = "CARDMAIL_TOKEN_TEST_HANG" // test-only agent hook: the named method sleeps
)

// hsmFixture is a SoftHSM2 with tokens:
//
//	"alice":   Alice's key and certificate, plus Bruno's certificate without key and a malformed certificate object
//	"expired": an expired identity with its key
//	"noeku":   an identity whose certificate lacks clientAuth, with its key
//	"empty":   no objects
type hsmFixture struct {
	hsm                  *bench.SoftHSM
	alice, bruno         *bench.Identity
	expired, noEKU       *bench.Identity
	malformedID, brunoID []byte
}

func newHSM(t testing.TB) *hsmFixture {
	t.Helper()
	dir := t.TempDir()
	pki, err := bench.NewPKI(dir, bench.CAName)
	if err != nil {
		t.Fatal(err)
	}
	ident := func(name string, opt bench.IdentityOptions) *bench.Identity {
		id, err := pki.Identity(name, opt)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	f := &hsmFixture{
		alice:       ident(bench.AliceName, bench.IdentityOptions{}),
		bruno:       ident(bench.BrunoName, bench.IdentityOptions{}),
		expired:     ident("Dr Old", bench.IdentityOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}),
		noEKU:       ident("Dr Mail Only", bench.IdentityOptions{NoClientAuthEKU: true}),
		malformedID: []byte{0xde, 0xad},
	}
	f.brunoID = []byte{0xb0}
	f.hsm = bench.NewSoftHSM(t, dir)
	for _, tok := range []struct {
		label string
		id    *bench.Identity
	}{{"alice", f.alice}, {"expired", f.expired}, {"noeku", f.noEKU}, {"empty", nil}} {
		if err := f.hsm.AddToken(tok.label, alicePIN, tok.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.hsm.AddRawCertificate("alice", f.brunoID, f.bruno.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	if err := f.hsm.AddRawCertificate("alice", f.malformedID, []byte("\x30\x82\x01\x00not a certificate")); err != nil {
		t.Fatal(err)
	}
	return f
}

func startClient(t testing.TB, module string, opt token.Options) *token.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := token.StartOptions(ctx, module, opt)
	if err != nil {
		t.Fatalf("start %s: %v", module, err)
	}
	t.Cleanup(func() {
		c.Kill()
		<-c.Done()
	})
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func slotByLabel(t testing.TB, c *token.Client, label string) token.Slot {
	t.Helper()
	slots, err := c.Slots(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Token.Label == label {
			return s
		}
	}
	t.Fatalf("no token %q in %+v", label, slots)
	return token.Slot{}
}

func TestSoftHSMListWithoutPIN(t *testing.T) {
	f := newHSM(t)
	c := startClient(t, f.hsm.Module, token.Options{})
	ctx := testCtx(t)
	slots, err := c.Slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 4 {
		t.Fatalf("slots = %+v, want the 4 initialised tokens (uninitialised free slot left out)", slots)
	}
	s := slotByLabel(t, c, "alice")
	if !s.Token.LoginRequired || s.Token.UserPINLocked || s.Token.Manufacturer == "" || s.Token.Serial == "" {
		t.Errorf("token info %+v", s.Token)
	}
	if ti, err := c.TokenInfo(ctx, s.ID); err != nil || ti != s.Token {
		t.Errorf("TokenInfo = %+v, %v; want %+v", ti, err, s.Token)
	}
	m, err := c.Mechanisms(ctx, s.ID)
	if err != nil || !m.RSAPKCS || !m.RSAPSS || !m.ECDSA {
		t.Errorf("mechanisms = %+v, %v", m, err)
	}
	certs, err := c.Certificates(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 {
		t.Fatalf("got %d certificates, want 3 (alice, bruno without key, malformed)", len(certs))
	}
	byID := map[string]token.Certificate{}
	for _, cert := range certs {
		byID[string(cert.ID)] = cert
		if cert.Slot != s.ID || cert.TokenLabel != "alice" || cert.TokenSerial != s.Token.Serial {
			t.Errorf("certificate token data: %+v", cert)
		}
		if cert.SHA256 != sha256.Sum256(cert.DER) {
			t.Errorf("SHA256 mismatch")
		}
	}
	a, ok := byID[string(bench.SoftHSMKeyID(f.alice.Cert))]
	if !ok {
		t.Fatalf("alice's certificate not found by CKA_ID")
	}
	if !a.Verdict.Usable || !a.HasPrivateKey || a.PrivateKeyInferred || a.KeyType != "RSA" || a.KeyBits != 2048 || a.Cert == nil ||
		!bytes.Equal(a.DER, f.alice.Cert.Raw) || a.CommonName() != bench.AliceName || a.Label != bench.AliceName {
		t.Errorf("alice: %+v", a)
	}
	b := byID[string(f.brunoID)]
	if b.HasPrivateKey || b.Verdict.Usable || len(b.Verdict.Reasons) != 1 || !b.Verdict.Has(token.ReasonNoPrivateKey) {
		t.Errorf("bruno (no key): verdict %+v", b.Verdict)
	}
	bad := byID[string(f.malformedID)]
	if bad.ParseErr == nil || bad.Cert != nil || !bad.Verdict.Has(token.ReasonMalformed) || bad.Verdict.Usable {
		t.Errorf("malformed: %+v", bad)
	}
}

func TestSoftHSMVerdicts(t *testing.T) {
	f := newHSM(t)
	c := startClient(t, f.hsm.Module, token.Options{})
	tests := []struct {
		label string
		want  []token.Reason
	}{
		{"expired", []token.Reason{token.ReasonExpired}},
		{"noeku", []token.Reason{token.ReasonNoClientAuth}},
		{"empty", nil},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			s := slotByLabel(t, c, tt.label)
			certs, err := c.Certificates(testCtx(t), s.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if len(certs) != 0 {
					t.Fatalf("empty token lists %d certificates", len(certs))
				}
				return
			}
			if len(certs) != 1 {
				t.Fatalf("got %d certificates", len(certs))
			}
			v := certs[0].Verdict
			if v.Usable || len(v.Reasons) != len(tt.want) || !v.Has(tt.want[0]) {
				t.Fatalf("verdict %+v, want %v", v, tt.want)
			}
		})
	}
}

func TestSoftHSMLoginAndSign(t *testing.T) {
	f := newHSM(t)
	c := startClient(t, f.hsm.Module, token.Options{})
	ctx := testCtx(t)
	s := slotByLabel(t, c, "alice")
	keyID := bench.SoftHSMKeyID(f.alice.Cert)
	msg := []byte("hello from cardmail")
	d256 := sha256.Sum256(msg)

	if _, err := c.Sign(ctx, s.ID, keyID, d256[:], token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA256}); !errors.Is(err, token.ErrNotLoggedIn) {
		t.Fatalf("sign before login: %v, want ErrNotLoggedIn", err)
	}
	pin := []byte(alicePIN)
	if err := c.Login(ctx, s.ID, pin); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pin, make([]byte, len(pin))) {
		t.Errorf("pin not zeroed after login: %q", pin)
	}
	pub := f.alice.Cert.PublicKey.(*rsa.PublicKey)
	d384 := sha512.Sum384(msg)
	tests := []struct {
		name   string
		s      token.Scheme
		digest []byte
		verify func(sig []byte) error
	}{
		{"pkcs1 sha256", token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA256}, d256[:], func(sig []byte) error {
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d256[:], sig)
		}},
		{"pkcs1 sha384", token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA384}, d384[:], func(sig []byte) error {
			return rsa.VerifyPKCS1v15(pub, crypto.SHA384, d384[:], sig)
		}},
		{"pss sha256 salt=hash", token.SchemeFor("RSA", &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}), d256[:], func(sig []byte) error {
			return rsa.VerifyPSS(pub, crypto.SHA256, d256[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}},
		{"pss sha384 salt 10", token.Scheme{Kind: token.PSS, Hash: crypto.SHA384, SaltLength: 10}, d384[:], func(sig []byte) error {
			return rsa.VerifyPSS(pub, crypto.SHA384, d384[:], sig, &rsa.PSSOptions{SaltLength: 10})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := c.Sign(ctx, s.ID, keyID, tt.digest, tt.s)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.verify(sig); err != nil {
				t.Fatalf("signature does not verify with the certificate's key: %v", err)
			}
		})
	}
	if _, err := c.Sign(ctx, s.ID, []byte{1, 2, 3}, d256[:], token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA256}); !errors.Is(err, token.ErrNoSuchKey) {
		t.Errorf("unknown key: %v, want ErrNoSuchKey", err)
	}
	if _, err := c.Sign(ctx, s.ID, keyID, d256[:10], token.Scheme{Kind: token.PSS, Hash: crypto.SHA256}); !errors.Is(err, token.ErrBadInput) {
		t.Errorf("short digest: %v, want ErrBadInput", err)
	}
	if err := c.Login(ctx, s.ID, []byte(alicePIN)); err != nil {
		t.Errorf("second login (already logged in) = %v, want nil", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if _, err := c.Slots(ctx); !errors.Is(err, token.ErrAgentKilled) {
		t.Errorf("call after Close: %v, want ErrAgentKilled", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestSoftHSMWrongPIN(t *testing.T) {
	f := newHSM(t)
	c := startClient(t, f.hsm.Module, token.Options{})
	ctx := testCtx(t)
	s := slotByLabel(t, c, "alice")
	pin := []byte("9999")
	err := c.Login(ctx, s.ID, pin)
	var pe *token.PINError
	if !errors.As(err, &pe) || pe.Reason != token.PINIncorrect {
		t.Fatalf("wrong PIN: %v, want *PINError incorrect", err)
	}
	if !bytes.Equal(pin, make([]byte, 4)) {
		t.Errorf("pin not zeroed after a failed login")
	}
	var oe *token.OpError
	if !errors.As(err, &oe) || oe.Op != "login" {
		t.Errorf("error does not name the op: %v", err)
	}
	ti, err := c.TokenInfo(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after one wrong PIN: %+v; token flags %+v", pe, ti)
	if ti.UserPINLocked || pe.TriesLeft == 0 {
		t.Errorf("one wrong PIN locked the token: %+v %+v", pe, ti)
	}
	if ti.UserPINCountLow != pe.CountLow {
		t.Errorf("PINError.CountLow %t but token flag %t", pe.CountLow, ti.UserPINCountLow)
	}
	// The right PIN still works: the wrong one was tried once, not retried into a lock.
	if err := c.Login(ctx, s.ID, []byte(alicePIN)); err != nil {
		t.Fatalf("right PIN after a wrong one: %v", err)
	}
	// An empty PIN is refused without a C_Login (NULL would mean the PIN pad) and keeps the login.
	if err := c.Login(ctx, s.ID, []byte{}); !errors.As(err, &pe) || pe.Reason != token.PINLenRange {
		t.Errorf("empty PIN: %v, want PINError lenRange", err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := c.Sign(ctx, s.ID, bench.SoftHSMKeyID(f.alice.Cert), d[:], token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA256}); err != nil {
		t.Errorf("sign after refused empty PIN: %v", err)
	}
}

func TestStartModuleErrors(t *testing.T) {
	notLib := t.TempDir() + "/not-a-library.so"
	if err := os.WriteFile(notLib, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		libc = "/lib/aarch64-linux-gnu/libc.so.6"
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{"missing", "/nonexistent/opensc-pkcs11.so", token.ErrModuleNotFound},
		{"directory", t.TempDir(), token.ErrModuleNotFound},
		{"libc has no C_GetFunctionList", libc, token.ErrNotPKCS11},
		{"not a shared library", notLib, token.ErrNotPKCS11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := token.Start(testCtx(t), tt.path)
			if err == nil {
				c.Kill()
				t.Fatalf("Start(%s) succeeded", tt.path)
			}
			var me *token.ModuleError
			if !errors.As(err, &me) || me.Path != tt.path || !errors.Is(err, tt.want) {
				t.Fatalf("Start(%s) = %v, want *ModuleError wrapping %v", tt.path, err, tt.want)
			}
		})
	}
}

// hangingClient starts an agent whose method op sleeps, and returns a channel that receives once the agent
// logged that it reached the hook (so the call is really in flight).
func hangingClient(t *testing.T, module, op string, opt token.Options) (*token.Client, <-chan struct{}) {
	t.Helper()
	t.Setenv(hangEnv, op)
	pr, pw := io.Pipe()
	opt.Stderr = pw
	reached := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			os.Stderr.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "test hang hook active") {
				select {
				case reached <- struct{}{}:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { pw.Close() })
	return startClient(t, module, opt), reached
}

func waitReached(t *testing.T, reached <-chan struct{}) {
	t.Helper()
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("agent never reached the hang hook")
	}
}

func TestHungCallTimesOut(t *testing.T) {
	f := newHSM(t)
	c, _ := hangingClient(t, f.hsm.Module, "Slots", token.Options{ListTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.Slots(context.Background())
	t.Logf("hung Slots returned after %v: %v", time.Since(start), err)
	var oe *token.OpError
	if !errors.Is(err, token.ErrTokenUnresponsive) || !errors.As(err, &oe) || oe.Op != "slots" {
		t.Fatalf("hung call: %v, want OpError{slots} wrapping ErrTokenUnresponsive", err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("agent not killed after the timeout")
	}
	if _, err := c.TokenInfo(context.Background(), 0); !errors.Is(err, token.ErrTokenUnresponsive) {
		t.Errorf("call on the dead client: %v, want ErrTokenUnresponsive", err)
	}
}

func TestCallerDeadlineCapsTimeout(t *testing.T) {
	f := newHSM(t)
	c, _ := hangingClient(t, f.hsm.Module, "TokenInfo", token.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Certificates(ctx, 0); !errors.Is(err, token.ErrTokenUnresponsive) {
		t.Fatalf("err = %v, want ErrTokenUnresponsive", err)
	}
	<-c.Done()
}

func TestCancelKillsAgent(t *testing.T) {
	f := newHSM(t)
	c, reached := hangingClient(t, f.hsm.Module, "Slots", token.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Slots(ctx); errc <- err }()
	waitReached(t, reached)
	cancel()
	if err := <-errc; !errors.Is(err, token.ErrAgentKilled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrAgentKilled and context.Canceled", err)
	}
	<-c.Done()
}

func TestAgentKilledMidCall(t *testing.T) {
	f := newHSM(t)
	t.Run("Kill", func(t *testing.T) {
		c, reached := hangingClient(t, f.hsm.Module, "Slots", token.Options{})
		errc := make(chan error, 1)
		go func() { _, err := c.Slots(context.Background()); errc <- err }()
		waitReached(t, reached)
		c.Kill()
		if err := <-errc; !errors.Is(err, token.ErrAgentKilled) {
			t.Fatalf("err = %v, want ErrAgentKilled", err)
		}
		<-c.Done()
		c.Kill() // idempotent
	})
	t.Run("external SIGKILL", func(t *testing.T) {
		c, reached := hangingClient(t, f.hsm.Module, "Slots", token.Options{})
		errc := make(chan error, 1)
		go func() { _, err := c.Slots(context.Background()); errc <- err }()
		waitReached(t, reached)
		p, err := os.FindProcess(c.PID())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Kill(); err != nil { // SIGKILL; TerminateProcess on Windows
			t.Fatal(err)
		}
		err = <-errc
		var ee *exec.ExitError
		if !errors.Is(err, token.ErrAgentExited) || !errors.As(err, &ee) {
			t.Fatalf("err = %v, want ErrAgentExited wrapping the exit status", err)
		}
		t.Logf("external kill: %v", err)
	})
}

// TestConcurrentSigns checks that one Client serves concurrent callers.
func TestConcurrentSigns(t *testing.T) {
	f := newHSM(t)
	c := startClient(t, f.hsm.Module, token.Options{})
	ctx := testCtx(t)
	s := slotByLabel(t, c, "alice")
	if err := c.Login(ctx, s.ID, []byte(alicePIN)); err != nil {
		t.Fatal(err)
	}
	keyID := bench.SoftHSMKeyID(f.alice.Cert)
	errc := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			d := make([]byte, 32)
			_, _ = rand.Read(d)
			sig, err := c.Sign(ctx, s.ID, keyID, d, token.Scheme{Kind: token.PSS, Hash: crypto.SHA256})
			if err == nil {
				err = rsa.VerifyPSS(f.alice.Cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, d, sig, nil)
			}
			errc <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkSoftHSMSign measures one PSS signature through the agent (rpc round trip + SoftHSM).
func BenchmarkSoftHSMSign(b *testing.B) {
	f := newHSM(b)
	c := startClient(b, f.hsm.Module, token.Options{})
	ctx := testCtx(b)
	s := slotByLabel(b, c, "alice")
	if err := c.Login(ctx, s.ID, []byte(alicePIN)); err != nil {
		b.Fatal(err)
	}
	keyID := bench.SoftHSMKeyID(f.alice.Cert)
	d := sha256.Sum256([]byte("bench"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Sign(ctx, s.ID, keyID, d[:], token.Scheme{Kind: token.PSS, Hash: crypto.SHA256}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartClose measures starting an agent (exec + module load + C_Initialize) and closing it, the cost
// paid on every card change.
func BenchmarkStartClose(b *testing.B) {
	f := newHSM(b)
	for i := 0; i < b.N; i++ {
		c, err := token.Start(context.Background(), f.hsm.Module)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
