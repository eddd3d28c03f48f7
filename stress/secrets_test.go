package stress_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/cli"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// The secrets of TestSecretsNeverWritten: an unusual PIN (8 bytes, the PIV maximum, digits and letters) and an
// unusual password, both unlikely to appear by chance.
const (
	secretPIN      = "7Kq93zXw"
	secretPassword = "Pw-unusual-7f3Q!k%9 zZ"
)

// encodings returns the forms in which a secret could leak: raw, hex (both cases), base64 (standard, URL, raw), and
// the SASL PLAIN blobs that carry it.
func encodings(secret string, users ...string) map[string]string {
	b := []byte(secret)
	out := map[string]string{
		"raw":        secret,
		"hex":        hex.EncodeToString(b),
		"HEX":        strings.ToUpper(hex.EncodeToString(b)),
		"base64":     base64.StdEncoding.EncodeToString(b),
		"base64raw":  base64.RawStdEncoding.EncodeToString(b),
		"base64url":  base64.URLEncoding.EncodeToString(b),
		"base64rurl": base64.RawURLEncoding.EncodeToString(b),
	}
	for _, u := range users {
		out["plain("+u+")"] = base64.StdEncoding.EncodeToString([]byte("\x00" + u + "\x00" + secret))
		out["plain("+u+","+u+")"] = base64.StdEncoding.EncodeToString([]byte(u + "\x00" + u + "\x00" + secret))
	}
	return out
}

// leakScanner looks for secrets, in every encoding, in named texts and in every file of directory trees.
type leakScanner struct {
	secrets map[string]map[string]string // secret name -> encoding -> text
	scanned int                          // texts and files looked at
	bytes   int64
}

func (s *leakScanner) text(t *testing.T, where string, data []byte) {
	t.Helper()
	s.scanned++
	s.bytes += int64(len(data))
	for name, encs := range s.secrets {
		for enc, v := range encs {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("the %s (%s) appears in %s", name, enc, where)
			}
		}
	}
}

func (s *leakScanner) tree(t *testing.T, root string) (files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), secretPIN) || strings.Contains(d.Name(), secretPassword) {
			t.Errorf("a secret is in the file name %s", p)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		s.text(t, p, data)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return files
}

// captureStderr points os.Stderr (which token agents started by the CLI inherit) at a pipe while fn runs, and
// returns what was written to it.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	rp, wp, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(&buf, rp) }()
	saved := os.Stderr
	os.Stderr = wp
	func() {
		defer func() { os.Stderr = saved }()
		fn()
	}()
	wp.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an agent process still holds the captured stderr 10 s after the CLI returned")
	}
	rp.Close()
	return buf.String()
}

// runCLI runs cardmail args in-process with buffered streams and a stdin that is not a terminal.
func runCLI(args ...string) (status int, stdout, stderr string) {
	var out, errb bytes.Buffer
	env := cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Lang: words.English}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	status = cli.Run(ctx, env, args)
	return status, out.String(), errb.String()
}

// TestSecretsNeverWritten runs a full session with a card whose PIN is secretPIN and an account password
// secretPassword: the CLI (check with the card, with LOGIN and PLAIN and the password, folders, send-test, all with
// CARDMAIL_PIN/CARDMAIL_PASSWORD), the accounts service (folders, check, a failed send kept in the outbox), a
// diagnosis report saved as text and JSON, a profile saved with profile.Store, and the agents' stderr. HOME and the
// XDG directories point into a temporary directory, so everything CardMail writes lands there. Then every file
// written and every captured stream is searched for either secret, raw, hex or base64: none may contain them.
func TestSecretsNeverWritten(t *testing.T) {
	home := t.TempDir()
	for k, v := range map[string]string{"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"XDG_CACHE_HOME": filepath.Join(home, ".cache"), "XDG_DATA_HOME": filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME": filepath.Join(home, ".local", "state")} {
		t.Setenv(k, v)
	}
	b := bench.Start(t)
	// Alice's card with the unusual PIN, in place of the bench's default one.
	b.Cards[0] = bench.NewCard(b.Alice, bench.CardOptions{PIN: secretPIN})
	dv := mailsrv.StartDovecot(t, b.PKI, mailsrv.DovecotOptions{Messages: 2, Folders: 3})
	alice := bench.DefaultEmail(bench.AliceName)
	scan := &leakScanner{secrets: map[string]map[string]string{
		"PIN":      encodings(secretPIN),
		"password": encodings(secretPassword, alice),
	}}
	b.InsertWait(t, 0, 0)
	t.Setenv(cli.EnvPIN, secretPIN)
	t.Setenv(cli.EnvPassword, secretPassword)

	// 1. The CLI, in-process, with the agents' stderr captured.
	common := []string{"--ca", dv.CAFile, "--module", b.OpenSC, "--user", alice}
	runs := [][]string{
		{"check", "--imap", dv.IMAPS, "--tls", "implicit", "--json"},
		{"check", "--imap", dv.IMAPS, "--tls", "implicit", "--auth", "plain"},
		{"check", "--imap", dv.IMAP, "--tls", "starttls", "--auth", "login", "--json"},
		{"check", "--smtp", dv.Submission, "--tls", "starttls", "--auth", "plain", "--to", alice},
		{"folders", "--imap", dv.IMAPS, "--tls", "implicit", "--json", "--repeat", "2", "--interval", "10ms"},
		{"folders", "--imap", dv.IMAPS, "--tls", "implicit", "--auth", "login"},
		{"send-test", "--smtp", dv.SubmissionS, "--tls", "implicit", "--to", alice, "--json"},
		{"send-test", "--smtp", dv.Submission, "--tls", "starttls", "--auth", "plain", "--to", alice},
	}
	for _, args := range runs {
		args = append(args, common...)
		var st int
		var out, errOut string
		agentErr := captureStderr(t, func() { st, out, errOut = runCLI(args...) })
		if st != cli.ExitOK {
			t.Errorf("cardmail %s: exit %d\n%s\n%s", strings.Join(args, " "), st, out, errOut)
		}
		what := "cardmail " + strings.Join(args[:2], " ")
		scan.text(t, what+" stdout", []byte(out))
		scan.text(t, what+" stderr", []byte(errOut))
		scan.text(t, what+" agent stderr", []byte(agentErr))
	}

	// 2. The accounts service with a session manager of its own (agents' stderr captured), as the GUI uses it.
	r := newRig(t, rigOptions{bench: b, pin: secretPIN})
	store, err := profile.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(store.UserDir, home) {
		t.Fatalf("profile store %s is not under HOME %s", store.UserDir, home)
	}
	dirs, err := app.DefaultDirs()
	if err != nil || !strings.HasPrefix(dirs.Cache, home) {
		t.Fatalf("account dirs %+v (%v) are not under HOME %s", dirs, err, home)
	}
	svc := app.NewAccounts(app.OneManager(r.m), dirs, -1, 0)
	t.Cleanup(func() { svc.Close() })
	prof := mailProfile(t, "clinic", dv.IMAPS, dv.SubmissionS, dv.CAFile)
	prof.Login = profile.LoginPlain
	if err := store.Save(prof); err != nil {
		t.Fatal(err)
	}
	loaded, err := store.Load("clinic")
	if err != nil {
		t.Fatal(err)
	}
	acct, err := svc.Account(loaded.Profile)
	if err != nil {
		t.Fatal(err)
	}
	acct.Password = secretPassword
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if fs, err := svc.Folders(ctx, loaded.Profile); err != nil || len(fs) == 0 {
		t.Errorf("accounts folders: %d, %v", len(fs), err)
	}
	reports := t.TempDir()
	for i, tg := range []diagnosis.Target{
		{Account: acct, Protocol: diagnosis.ProtocolIMAP},
		{Account: acct, Protocol: diagnosis.ProtocolSMTP, SendTo: alice},
	} {
		rep := diagnosis.Run(ctx, r.m, tg)
		if !rep.OK {
			t.Errorf("diagnosis %s: %s\n%s", tg.Protocol, rep.Code, rep.Text())
		}
		writeFile(t, filepath.Join(home, "report-"+tg.Protocol+".txt"), []byte(rep.Text()))
		writeFile(t, filepath.Join(reports, fmt.Sprintf("report-%d.json", i)), rep.JSON())
		js, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		scan.text(t, "report marshalled", js)
	}
	rep := svc.Check(ctx, loaded.Profile, diagnosis.ProtocolIMAP, nil)
	writeFile(t, filepath.Join(home, "check.txt"), []byte(rep.Text()))
	writeFile(t, filepath.Join(home, "check.json"), rep.JSON())
	// A failed send: the submission port of a server that is gone. The test fails; nothing of it is kept.
	broken := mailProfile(t, "broken", dv.IMAPS, "127.0.0.1:1", dv.CAFile)
	if err := store.Save(broken); err != nil {
		t.Fatal(err)
	}
	sent, err := svc.SendTest(ctx, broken, "test body")
	if err == nil || sent == nil {
		t.Errorf("send to a closed port: %+v, %v; want an error", sent, err)
	}
	if err != nil {
		scan.text(t, "send error", []byte(err.Error()))
	}
	r.stop()
	scan.text(t, "accounts agents' stderr", []byte(r.agentErr.String()))

	// 3. Every file under HOME (profiles, CRL cache, reports) and the saved reports.
	files := scan.tree(t, home) + scan.tree(t, reports)
	if files < 6 {
		t.Errorf("only %d files written under HOME and the report dir: the session did not write what it should", files)
	}
	var list []string
	_ = filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(home, p)
			list = append(list, rel)
		}
		return nil
	})
	t.Logf("SECRETS scanned %d texts and files (%d bytes) for the PIN and the password in %d encodings each: %d files under HOME %v",
		scan.scanned, scan.bytes, len(scan.secrets["PIN"])+len(scan.secrets["password"]), files, list)
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWrongPINReachesCardOnce runs `cardmail check` and `cardmail folders` with a wrong CARDMAIL_PIN: each exits
// with pin_incorrect, and each run sends the wrong PIN to the card exactly once (Card.Counters().VerifyWrong), even
// with --repeat or with both an IMAP and an SMTP target, so that a script cannot lock the card.
func TestWrongPINReachesCardOnce(t *testing.T) {
	b := bench.Start(t)
	dv := mailsrv.StartDovecot(t, b.PKI, mailsrv.DovecotOptions{NoPostfix: true})
	b.InsertWait(t, 0, 0)
	alice := bench.DefaultEmail(bench.AliceName)
	t.Setenv(cli.EnvPIN, "00000000")
	common := []string{"--ca", dv.CAFile, "--module", b.OpenSC, "--user", alice, "--imap", dv.IMAPS, "--tls", "implicit", "--json"}
	smtp := []string{"--smtp", dv.SubmissionS}
	card := b.Cards[0]
	cases := []struct {
		name string
		args []string
	}{
		{"check", []string{"check"}},
		{"folders", []string{"folders"}},
		{"check --repeat 3", []string{"check", "--repeat", "3", "--interval", "10ms"}},
		{"check imap and smtp", append([]string{"check"}, smtp...)},
		{"folders --repeat 3", []string{"folders", "--repeat", "3", "--interval", "10ms"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case is a first run: a remembered refusal (TestEnvPINNeverSpendsLastTries in cli) would stop it
			// from sending the PIN at all.
			t.Setenv("XDG_CONFIG_HOME", t.TempDir())
			before := card.Counters()
			tries := card.TriesLeft()
			st, out, errOut := runCLI(append(c.args, common...)...)
			after := card.Counters()
			if st != cli.ExitFailure || !strings.Contains(out, `"pin_incorrect"`) {
				t.Errorf("exit %d, want %d with pin_incorrect:\n%s\n%s", st, cli.ExitFailure, out, errOut)
			}
			if n := after.VerifyWrong - before.VerifyWrong; n != 1 {
				t.Errorf("the wrong PIN reached the card %d times, want exactly 1 (tries left %d → %d)", n, tries, card.TriesLeft())
			}
			if n := after.Verify - before.Verify; n != 1 {
				t.Errorf("%d VERIFY commands with a PIN, want 1", n)
			}
			t.Logf("WRONGPIN %s: VerifyWrong +%d, Verify +%d, tries left %d → %d", c.name, after.VerifyWrong-before.VerifyWrong,
				after.Verify-before.Verify, tries, card.TriesLeft())
			// Give the card its tries back for the next case: reinsert a fresh card with the same identity.
			b.RemoveWait(t, 0)
			b.Cards[0] = bench.NewCard(b.Alice, bench.CardOptions{})
			card = b.Cards[0]
			b.InsertWait(t, 0, 0)
		})
	}
}
