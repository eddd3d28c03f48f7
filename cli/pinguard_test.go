package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// startCertServer is a TLS server on loopback that asks for a client certificate from the bench CA: enough for the
// card login of `check` to happen (the PIN is asked when the TLS config is built).
func startCertServer(t *testing.T, b *bench.Bench) string {
	t.Helper()
	sc, err := b.PKI.ServerCert("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(sc.CertPEM, sc.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b.PKI.CA)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("* OK ready\r\n"))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// A cron job with a stale CARDMAIL_PIN cannot lock a card: the card sees the wrong PIN once; the next runs (new
// processes as far as the CLI is concerned: each Run has its own session manager) refuse to send it, even once the
// environment holds the right PIN, until a person logs in. On the card's final try the PIN from the environment is
// never sent at all.
func TestEnvPINNeverSpendsLastTries(t *testing.T) {
	b := bench.Start(t)
	cfgDir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgDir)
	addr := startCertServer(t, b)
	b.InsertWait(t, 0, 0)
	card := b.Cards[0]
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, b.PKI.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"check", "--imap", addr, "--tls", "implicit", "--ca", caFile, "--module", b.OpenSC, "--json",
		"--user", bench.DefaultEmail(bench.AliceName)}
	codeOf := func(out string) string {
		var m map[string]any
		_ = json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &m)
		c, _ := m["code"].(string)
		return c
	}

	t.Setenv(EnvPIN, "000000")
	st, out, errOut := runCLI(t, args...)
	if got := codeOf(out); st != ExitFailure || got != "pin_incorrect" {
		t.Fatalf("run 1 (wrong PIN): exit %d code %q\n%s\n%s", st, got, out, errOut)
	}
	after1 := card.Counters()
	if after1.VerifyWrong != 1 || card.TriesLeft() != 2 {
		t.Fatalf("run 1: %d wrong VERIFY, %d tries left; want 1 and 2", after1.VerifyWrong, card.TriesLeft())
	}
	record, err := os.ReadFile(filepath.Join(cfgDir, "cardmail", refusalFile))
	if err != nil || strings.Contains(string(record), "000000") {
		t.Fatalf("refusal record %q %v (it must exist and never hold the PIN)", record, err)
	}
	for run, pin := range []string{"000000", bench.DefaultPIN} {
		t.Setenv(EnvPIN, pin)
		st, out, errOut = runCLI(t, args...)
		if got := codeOf(out); st != ExitFailure || got != "pin_cancelled" || !strings.Contains(errOut, "refused a PIN") {
			t.Fatalf("run %d: exit %d code %q\n%s\n%s", run+2, st, got, out, errOut)
		}
		if c := card.Counters(); c.Verify != after1.Verify {
			t.Fatalf("run %d sent a PIN to the card (VERIFY %d → %d)", run+2, after1.Verify, c.Verify)
		}
	}

	// A person logs in (here: the outcome the session reports after a typed PIN): the record is cleared.
	g := newPINGuard()
	req := session.PINRequest{TokenSerial: firstSerial(t, record), TriesLeft: -1}
	g.outcome(req, nil)
	if err := g.check(req); err != nil {
		t.Fatalf("after a successful login the environment PIN is still refused: %v", err)
	}

	// Final try: one more wrong VERIFY straight to the card leaves 1 try; the token says FINAL_TRY and the CLI does
	// not send the PIN, right or wrong.
	if sw := card.Transmit([]byte{0x00, 0x20, 0x00, 0x80, 0x08, '9', '9', '9', '9', '9', '9', 0xFF, 0xFF}); len(sw) != 2 || sw[0] != 0x63 {
		t.Fatalf("direct wrong VERIFY: % x", sw)
	}
	if card.TriesLeft() != 1 {
		t.Fatalf("tries left %d, want 1", card.TriesLeft())
	}
	before := card.Counters()
	t.Setenv(EnvPIN, bench.DefaultPIN)
	b.RemoveWait(t, 0) // a new card session, so that the token's flags are read afresh
	b.InsertWait(t, 0, 0)
	st, out, errOut = runCLI(t, args...)
	if got := codeOf(out); st != ExitFailure || got != "pin_cancelled" || !strings.Contains(errOut, "few PIN tries") {
		t.Fatalf("final try: exit %d code %q\n%s\n%s", st, got, out, errOut)
	}
	if c := card.Counters(); c.Verify != before.Verify || card.TriesLeft() != 1 {
		t.Fatalf("final try: the PIN reached the card (VERIFY %d → %d, tries %d)", before.Verify, c.Verify, card.TriesLeft())
	}
	t.Logf("wrong VERIFY in all: %d (1 from the CLI, 1 straight to the card); tries left %d", card.Counters().VerifyWrong, card.TriesLeft())
}

func firstSerial(t *testing.T, record []byte) string {
	t.Helper()
	var m map[string]time.Time
	if err := json.Unmarshal(record, &m); err != nil || len(m) != 1 {
		t.Fatalf("record %q: %v", record, err)
	}
	for k := range m {
		return k
	}
	return ""
}

// Without a configuration directory nothing can be remembered: the environment PIN is not sent.
func TestEnvPINWithoutMemory(t *testing.T) {
	g := &pinGuard{}
	if err := g.check(session.PINRequest{TokenSerial: "x", TriesLeft: -1}); !errors.Is(err, ErrNoPINMemory) {
		t.Fatalf("got %v, want ErrNoPINMemory", err)
	}
	g = &pinGuard{path: filepath.Join(t.TempDir(), "cardmail", refusalFile)}
	if err := g.check(session.PINRequest{TokenSerial: "x", TriesLeft: -1}); err != nil {
		t.Fatalf("empty record: %v", err)
	}
	g.outcome(session.PINRequest{TokenSerial: "x"}, &token.PINError{Reason: token.PINIncorrect, TriesLeft: 2})
	var re *EnvPINRefusedError
	if err := g.check(session.PINRequest{TokenSerial: "x", TriesLeft: -1}); !errors.As(err, &re) || re.TokenSerial != "x" {
		t.Fatalf("after a refusal: %v", err)
	}
	if err := g.check(session.PINRequest{TokenSerial: "y", TriesLeft: -1}); err != nil {
		t.Fatalf("another token: %v", err)
	}
	if err := os.WriteFile(g.path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.check(session.PINRequest{TokenSerial: "y", TriesLeft: -1}); !errors.Is(err, ErrNoPINMemory) {
		t.Fatalf("unreadable record: %v, want ErrNoPINMemory", err)
	}
}
