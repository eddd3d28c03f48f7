package bench

// Integration tests on the real chain: pcscd + vpcd + bench.Card + OpenSC (opensc-tool, pkcs11-tool and
// opensc-pkcs11.so through miekg/pkcs11). They take the machine-wide bench lock through Start and fail (never skip)
// when a component is missing.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

const testPINEnv = "CARDMAIL_BENCH_TEST_PIN" // pkcs11-tool reads it with --pin env:NAME, off the command line

// tool runs an OpenSC command line tool with a timeout and returns its combined output.
func tool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v); %s", name, err, InstallHint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readerLine(out, reader string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, reader) {
			return l
		}
	}
	return ""
}

func TestChainOpenSCTools(t *testing.T) {
	b := Start(t)
	b.InsertWait(t, 0, 0)

	if l := readerLine(tool(t, nil, "opensc-tool", "-l"), b.Readers[0]); !regexp.MustCompile(`\bYes\b`).MatchString(l) {
		t.Fatalf("opensc-tool -l: reader 0 line %q, want card present", l)
	}
	if l := readerLine(tool(t, nil, "opensc-tool", "-l"), b.Readers[1]); !regexp.MustCompile(`\bNo\b`).MatchString(l) {
		t.Fatalf("opensc-tool -l: reader 1 line %q, want empty", l)
	}
	out := tool(t, nil, "pkcs11-tool", "--module", b.OpenSC, "-L", "-O")
	for _, want := range []string{
		"token label        : " + AliceName,
		"Certificate Object; type = X.509 cert",
		"CN=" + AliceName,
		"Public Key Object; RSA 2048 bits",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pkcs11-tool -L -O: no %q in\n%s", want, out)
		}
	}
	// OpenSC hides private objects until login (C_FindObjectsInit: "Private object and not logged in"): the
	// private key shows up with --login only.
	if strings.Contains(out, "Private Key Object") {
		t.Errorf("private key listed without login; OpenSC behaviour changed?")
	}
	if n := b.Cards[0].Counters().Verify; n != 0 {
		t.Fatalf("listing sent %d VERIFY with a PIN", n)
	}

	dir := t.TempDir()
	msg, sig := filepath.Join(dir, "msg"), filepath.Join(dir, "sig")
	if err := os.WriteFile(msg, []byte("CardMail bench"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{testPINEnv + "=" + DefaultPIN}
	out = tool(t, env, "pkcs11-tool", "--module", b.OpenSC, "--login", "--pin", "env:"+testPINEnv, "-O")
	if !strings.Contains(out, "Private Key Object; RSA") || !strings.Contains(out, "PIV AUTH key") {
		t.Errorf("pkcs11-tool --login -O: no private key in\n%s", out)
	}
	tool(t, env, "pkcs11-tool", "--module", b.OpenSC, "--login", "--pin", "env:"+testPINEnv,
		"--sign", "-m", "RSA-PKCS", "-i", msg, "-o", sig)
	s, err := os.ReadFile(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&b.Alice.Key.PublicKey, 0, []byte("CardMail bench"), s); err != nil {
		t.Fatalf("pkcs11-tool RSA-PKCS signature does not verify: %v", err)
	}
	tool(t, env, "pkcs11-tool", "--module", b.OpenSC, "--login", "--pin", "env:"+testPINEnv,
		"--sign", "-m", "SHA256-RSA-PKCS-PSS", "-i", msg, "-o", sig)
	if s, err = os.ReadFile(sig); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("CardMail bench"))
	if err := rsa.VerifyPSS(&b.Alice.Key.PublicKey, crypto.SHA256, d[:], s,
		&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		t.Fatalf("pkcs11-tool SHA256-RSA-PKCS-PSS signature does not verify: %v", err)
	}
	if c := b.Cards[0].Counters(); c.Sign != 2 || c.VerifyWrong != 0 || c.Verify < 2 {
		t.Errorf("counters %+v, want 2 signatures, no wrong PIN", c)
	}

	b.RemoveWait(t, 0)
	if l := readerLine(tool(t, nil, "opensc-tool", "-l"), b.Readers[0]); !regexp.MustCompile(`\bNo\b`).MatchString(l) {
		t.Fatalf("after removal: reader 0 line %q, want empty", l)
	}
	if out := tool(t, nil, "pkcs11-tool", "--module", b.OpenSC, "-L"); strings.Contains(out, AliceName) {
		t.Fatalf("token still listed after removal:\n%s", out)
	}
}

// p11 is a miekg/pkcs11 context on OpenSC, finalized in t.Cleanup (before the bench cleanup removes the cards).
type p11 struct {
	*pkcs11.Ctx
}

func openP11(t testing.TB, module string) p11 {
	t.Helper()
	ctx := pkcs11.New(module)
	if ctx == nil {
		t.Fatalf("cannot load PKCS#11 module %s", module)
	}
	if err := ctx.Initialize(); err != nil {
		ctx.Destroy()
		t.Fatalf("C_Initialize: %v", err)
	}
	t.Cleanup(func() {
		_ = ctx.Finalize()
		ctx.Destroy()
	})
	return p11{ctx}
}

// slotOf returns the slot whose token label is label.
func (p p11) slotOf(t testing.TB, label string) uint {
	t.Helper()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatalf("C_GetSlotList: %v", err)
	}
	var seen []string
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if strings.TrimSpace(ti.Label) == label {
			return s
		}
		seen = append(seen, ti.Label)
	}
	t.Fatalf("no token %q (tokens: %q)", label, seen)
	return 0
}

func (p p11) certDER(t testing.TB, sess pkcs11.SessionHandle) []byte {
	t.Helper()
	objs := p.find(t, sess, pkcs11.CKO_CERTIFICATE)
	if len(objs) != 1 {
		t.Fatalf("%d certificates, want 1", len(objs))
	}
	attrs, err := p.GetAttributeValue(sess, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		t.Fatalf("C_GetAttributeValue: %v", err)
	}
	return attrs[0].Value
}

func (p p11) find(t testing.TB, sess pkcs11.SessionHandle, class uint) []pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(sess, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}); err != nil {
		t.Fatalf("C_FindObjectsInit: %v", err)
	}
	objs, _, err := p.FindObjects(sess, 10)
	if err != nil {
		t.Fatalf("C_FindObjects: %v", err)
	}
	if err := p.FindObjectsFinal(sess); err != nil {
		t.Fatalf("C_FindObjectsFinal: %v", err)
	}
	return objs
}

func (p p11) session(t testing.TB, slot uint) pkcs11.SessionHandle {
	t.Helper()
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatalf("C_OpenSession: %v", err)
	}
	return sess
}

// p11Signer is a crypto.Signer over a logged-in PKCS#11 session: CKM_RSA_PKCS_PSS for *rsa.PSSOptions, otherwise
// CKM_RSA_PKCS over a DigestInfo. Safe for concurrent use (one operation at a time).
type p11Signer struct {
	mu   sync.Mutex
	p    p11
	sess pkcs11.SessionHandle
	key  pkcs11.ObjectHandle
	pub  crypto.PublicKey
}

func (s *p11Signer) Public() crypto.PublicKey { return s.pub }

var digestInfo = map[crypto.Hash][]byte{ // RFC 8017 9.2 note 1
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

func (s *p11Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	var mech *pkcs11.Mechanism
	input := digest
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		hm, mgf := map[crypto.Hash][2]uint{
			crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
			crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
			crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
		}[h], uint(0)
		if hm[0] == 0 {
			return nil, fmt.Errorf("unsupported PSS hash %v", h)
		}
		mgf = hm[1]
		salt := pss.SaltLength
		if salt == rsa.PSSSaltLengthEqualsHash || salt == rsa.PSSSaltLengthAuto {
			salt = h.Size()
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hm[0], mgf, uint(salt)))
	} else {
		prefix, ok := digestInfo[h]
		if !ok {
			return nil, fmt.Errorf("unsupported hash %v", h)
		}
		input = append(bytes.Clone(prefix), digest...)
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.p.SignInit(s.sess, []*pkcs11.Mechanism{mech}, s.key); err != nil {
		return nil, fmt.Errorf("C_SignInit: %w", err)
	}
	sig, err := s.p.Sign(s.sess, input)
	if err != nil {
		return nil, fmt.Errorf("C_Sign: %w", err)
	}
	return sig, nil
}

// loginSigner opens a session on the token labelled id.Name, logs in with the default PIN and returns a signer
// for its private key.
func loginSigner(t testing.TB, p p11, id *Identity) *p11Signer {
	t.Helper()
	slot := p.slotOf(t, id.Name)
	sess := p.session(t, slot)
	if err := p.Login(sess, pkcs11.CKU_USER, DefaultPIN); err != nil {
		t.Fatalf("C_Login: %v", err)
	}
	keys := p.find(t, sess, pkcs11.CKO_PRIVATE_KEY)
	if len(keys) != 1 {
		t.Fatalf("%d private keys after login, want 1", len(keys))
	}
	return &p11Signer{p: p, sess: sess, key: keys[0], pub: id.Cert.PublicKey}
}

func TestChainTLSClientAuth(t *testing.T) {
	b := Start(t)
	b.InsertWait(t, 0, 0)
	p := openP11(t, b.OpenSC)
	signer := loginSigner(t, p, b.Alice)
	server, err := b.PKI.ServerCert("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	serverCert := tls.Certificate{Certificate: [][]byte{server.Cert.Raw}, PrivateKey: server.Key}

	tests := []struct {
		name    string
		version uint16
		schemes []tls.SignatureScheme
	}{
		{"TLS 1.2 RSA-PSS", tls.VersionTLS12, []tls.SignatureScheme{tls.PSSWithSHA256}},
		{"TLS 1.2 PKCS1v15", tls.VersionTLS12, []tls.SignatureScheme{tls.PKCS1WithSHA256}},
		{"TLS 1.2 PSS SHA-384", tls.VersionTLS12, []tls.SignatureScheme{tls.PSSWithSHA384}},
		{"TLS 1.3 RSA-PSS", tls.VersionTLS13, []tls.SignatureScheme{tls.PSSWithSHA256, tls.PSSWithSHA384}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.Cards[0].Counters().Sign
			peer, err := handshake(t, serverCert, b.PKI.Pool(), tt.version, tls.Certificate{
				Certificate:                  [][]byte{b.Alice.Cert.Raw},
				PrivateKey:                   signer,
				SupportedSignatureAlgorithms: tt.schemes,
			})
			if err != nil {
				t.Fatal(err)
			}
			if peer.Subject.CommonName != AliceName {
				t.Fatalf("server saw %q", peer.Subject.CommonName)
			}
			if n := b.Cards[0].Counters().Sign - before; n != 1 {
				t.Fatalf("card made %d signatures, want 1", n)
			}
		})
	}
}

// handshake runs a TLS server on 127.0.0.1 requiring a client certificate from roots and a client presenting cert
// through GetClientCertificate; it returns the client certificate the server verified.
func handshake(t *testing.T, serverCert tls.Certificate, roots *x509.CertPool, version uint16,
	client tls.Certificate) (*x509.Certificate, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   version,
		MaxVersion:   version,
	})
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	type result struct {
		peer *x509.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- result{err: fmt.Errorf("server handshake: %w", err)}
			return
		}
		// TLS 1.3: the client certificate arrives after the client's handshake; echo one byte to sync.
		buf := make([]byte, 1)
		if _, err := io.ReadFull(tc, buf); err != nil {
			done <- result{err: fmt.Errorf("server read: %w", err)}
			return
		}
		_, _ = tc.Write(buf)
		state := tc.ConnectionState()
		if len(state.PeerCertificates) == 0 {
			done <- result{err: errors.New("no client certificate")}
			return
		}
		done <- result{peer: state.PeerCertificates[0]}
	}()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), &tls.Config{
		RootCAs:    roots,
		ServerName: "localhost",
		MinVersion: version,
		MaxVersion: version,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &client, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("client handshake: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if conn.ConnectionState().Version != version {
		return nil, fmt.Errorf("negotiated %x", conn.ConnectionState().Version)
	}
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		return nil, fmt.Errorf("client read: %w", err)
	}
	select {
	case r := <-done:
		return r.peer, r.err
	case <-time.After(20 * time.Second):
		return nil, errors.New("server did not finish")
	}
}

func TestChainSwapAndTwoReaders(t *testing.T) {
	b := Start(t)
	b.InsertWait(t, 0, 0)
	p := openP11(t, b.OpenSC)
	slot := p.slotOf(t, AliceName)
	sess := p.session(t, slot)
	if der := p.certDER(t, sess); !bytes.Equal(der, b.Alice.Cert.Raw) {
		t.Fatal("token certificate is not Alice's")
	}
	_ = p.CloseSession(sess)

	b.Swap(t, 0, 1)
	if b.Cards[0].Inserted() || !b.Cards[1].Inserted() {
		t.Fatalf("after swap: alice inserted %v, bruno %v", b.Cards[0].Inserted(), b.Cards[1].Inserted())
	}
	slot = p.slotOf(t, BrunoName)
	sess = p.session(t, slot)
	if der := p.certDER(t, sess); !bytes.Equal(der, b.Bruno.Cert.Raw) {
		t.Fatal("token certificate after swap is not Bruno's")
	}
	_ = p.CloseSession(sess)

	// Both cards at once, one per reader: two tokens with different serial numbers.
	b.InsertWait(t, 0, 1)
	sa, sb := p.slotOf(t, AliceName), p.slotOf(t, BrunoName)
	ta, err := p.GetTokenInfo(sa)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := p.GetTokenInfo(sb)
	if err != nil {
		t.Fatal(err)
	}
	if ta.SerialNumber == tb.SerialNumber {
		t.Fatalf("both tokens have serial %q", ta.SerialNumber)
	}
	b.RemoveWait(t, 0)
	b.RemoveWait(t, 1)
	if slots, err := p.GetSlotList(true); err != nil || len(slots) != 0 {
		t.Fatalf("tokens after removing both cards: %v, %v", slots, err)
	}
}

func TestChainWrongPIN(t *testing.T) {
	b := Start(t)
	b.InsertWait(t, 0, 0)
	p := openP11(t, b.OpenSC)
	sess := p.session(t, p.slotOf(t, AliceName))
	err := p.Login(sess, pkcs11.CKU_USER, "999999")
	var pe pkcs11.Error
	if !errors.As(err, &pe) || pe != pkcs11.CKR_PIN_INCORRECT {
		t.Fatalf("C_Login with a wrong PIN: %v, want CKR_PIN_INCORRECT", err)
	}
	if n := b.Cards[0].TriesLeft(); n != 2 {
		t.Fatalf("TriesLeft %d, want 2", n)
	}
	if c := b.Cards[0].Counters(); c.VerifyWrong != 1 || c.Verify != 1 {
		t.Fatalf("counters %+v, want Verify 1, VerifyWrong 1", c)
	}

	// OpenSC's PIV driver does not know the maximum tries, so it never sets CKF_USER_PIN_COUNT_LOW; with one try
	// left it sets CKF_USER_PIN_FINAL_TRY.
	if err := p.Login(sess, pkcs11.CKU_USER, "888888"); !errors.As(err, &pe) || pe != pkcs11.CKR_PIN_INCORRECT {
		t.Fatalf("second wrong PIN: %v, want CKR_PIN_INCORRECT", err)
	}
	ti, err := p.GetTokenInfo(p.slotOf(t, AliceName))
	if err != nil {
		t.Fatal(err)
	}
	if ti.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY == 0 || b.Cards[0].TriesLeft() != 1 {
		t.Errorf("token flags %#x, tries %d: want CKF_USER_PIN_FINAL_TRY with one try left", ti.Flags,
			b.Cards[0].TriesLeft())
	}
	if err := p.Login(sess, pkcs11.CKU_USER, DefaultPIN); err != nil {
		t.Fatalf("C_Login with the right PIN: %v", err)
	}
	if n := b.Cards[0].TriesLeft(); n != 3 {
		t.Fatalf("TriesLeft after the right PIN %d, want 3", n)
	}
}

func TestChainPCSCDRestart(t *testing.T) {
	b := Start(t)
	b.InsertWait(t, 0, 0)
	if err := StopPCSCD(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Cards[0].Inserted() {
		if time.Now().After(deadline) {
			t.Fatal("card still inserted 5 s after pcscd was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := WaitCard(b.Readers[0], false, time.Second); err == nil {
		t.Fatal("WaitCard succeeded with pcscd stopped")
	}
	if err := EnsurePCSCD(); err != nil {
		t.Fatal(err)
	}
	b.RemoveWait(t, 0) // the card dropped out with the daemon: only the bookkeeping remains
	b.InsertWait(t, 0, 0)
	p := openP11(t, b.OpenSC)
	s := loginSigner(t, p, b.Alice)
	d := sha256.Sum256([]byte("after restart"))
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&b.Alice.Key.PublicKey, crypto.SHA256, d[:], sig); err != nil {
		t.Fatal(err)
	}
}

func TestLockReentrant(t *testing.T) {
	Lock(t)
	Lock(t) // same test: must not deadlock
	t.Run("sub", func(t *testing.T) {
		Lock(t) // subtest of the holder
	})
}

// BenchmarkChainSign measures one RSA-PSS signature through PKCS#11 → OpenSC → pcscd → vpcd → card.
func BenchmarkChainSign(b *testing.B) {
	bb := Start(b)
	bb.InsertWait(b, 0, 0)
	p := openP11(b, bb.OpenSC)
	s := loginSigner(b, p, bb.Alice)
	d := sha256.Sum256([]byte("bench"))
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sign(nil, d[:], opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertWait measures insert → pcscd reports present, and remove → absent.
func BenchmarkInsertWait(b *testing.B) {
	bb := Start(b)
	for b.Loop() {
		bb.InsertWait(b, 0, 0)
		bb.RemoveWait(b, 0)
	}
}
