package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/words"
)

// systemPKI is the only root of this test binary's system trust store (see useTestSystemRoots): a server under it
// is what a server with a public CA's certificate is to a real machine.
var systemPKI *bench.PKI

// useTestSystemRoots makes a test CA the system's only root for this process (SSL_CERT_FILE, and SSL_CERT_DIR at an
// empty directory), before anything loads the system roots. It returns a cleanup.
func useTestSystemRoots() (func(), error) {
	dir, err := os.MkdirTemp("", "cli-system-roots-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	systemPKI, err = bench.NewPKI(filepath.Join(dir, "pki"), "Public Web Root (test system root)")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "roots.pem"), systemPKI.CAPEM, 0o600)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, "empty"), 0o700)
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	os.Setenv("SSL_CERT_FILE", filepath.Join(dir, "roots.pem"))
	os.Setenv("SSL_CERT_DIR", filepath.Join(dir, "empty"))
	return cleanup, nil
}

// imapServer starts an IMAP stub on 127.0.0.1 with implicit TLS and a certificate of pki naming a CRL (served on
// 127.0.0.1) that revokes nothing; it does not ask for a client certificate.
func imapServer(t *testing.T, pki *bench.PKI) string {
	t.Helper()
	crl, err := mailsrv.SignCRL(pki)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := mailsrv.IssueServerCert(pki, mailsrv.CertOptions{CRLURL: mailsrv.ServeCRL(t, crl)})
	if err != nil {
		t.Fatal(err)
	}
	return mailsrv.IMAPStub{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Caps: []string{"AUTH=EXTERNAL"}}.Serve(t)
}

// checkReport builds the account from check's flags, exactly as `cardmail check` does, and runs the diagnosis
// ladder with no card (the servers do not ask for one). It returns the report and its JSON.
func checkReport(t *testing.T, args ...string) (*diagnosis.Report, map[string]any) {
	t.Helper()
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tf := addTargetFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	acct, err := noCardAccount(tf, Env{Stderr: io.Discard, Lang: words.English})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := diagnosis.Run(ctx, nil, diagnosis.Target{Account: acct, Protocol: diagnosis.ProtocolIMAP, Timeout: 5 * time.Second})
	var m map[string]any
	if err := json.Unmarshal(rep.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	contractKeys(t, m)
	return rep, m
}

func tlsStepOK(rep *diagnosis.Report) bool {
	for _, s := range rep.Steps {
		if s.Name == diagnosis.StepTLS {
			return s.OK
		}
	}
	return false
}

// TestTrustPolicies runs `check`'s account through the whole chain (flags, TLS policy, diagnosis ladder, report)
// against real TLS servers on 127.0.0.1: under mssante a server whose chain goes to a system root is
// server_cert_untrusted, one under a CA file the command names passes the TLS step, and the report says which
// anchor the chain ended at and where it came from.
func TestTrustPolicies(t *testing.T) {
	public := imapServer(t, systemPKI)
	clinicPKI, err := bench.NewPKI(t.TempDir(), "Clinic IT Root")
	if err != nil {
		t.Fatal(err)
	}
	clinic := imapServer(t, clinicPKI)
	clinicCA := filepath.Join(t.TempDir(), "clinic-ca.pem")
	if err := os.WriteFile(clinicCA, clinicPKI.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	untrusted := []struct {
		name string
		args []string
	}{
		{"mssante, system root", []string{"--imap", public, "--tls", "implicit", "--tls-policy", "mssante"}},
		{"mssante with a CA file, system root", []string{"--imap", public, "--tls", "implicit", "--tls-policy", "mssante", "--ca", clinicCA}},
		{"mssante, CA not named", []string{"--imap", clinic, "--tls", "implicit", "--tls-policy", "mssante"}},
		{"default, CA not named", []string{"--imap", clinic, "--tls", "implicit"}},
	}
	for _, c := range untrusted {
		t.Run(c.name, func(t *testing.T) {
			rep, m := checkReport(t, c.args...)
			if rep.Code != diagnosis.ServerCertUntrusted || tlsStepOK(rep) || m["tls"].(map[string]any)["trust_anchor"] != nil {
				t.Fatalf("code %s, want %s with no anchor\n%s", rep.Code, diagnosis.ServerCertUntrusted, rep.Text())
			}
		})
	}
	trusted := []struct {
		name, source, path string
		mssante            bool
		args               []string
	}{
		{"default, system root", "system", "", false, []string{"--imap", public, "--tls", "implicit"}},
		{"mssante, CA file", "ca_file", clinicCA, true, []string{"--imap", clinic, "--tls", "implicit", "--tls-policy", "mssante", "--ca", clinicCA}},
		{"default, CA file", "ca_file", clinicCA, false, []string{"--imap", clinic, "--tls", "implicit", "--ca", clinicCA}},
	}
	for _, c := range trusted {
		t.Run(c.name, func(t *testing.T) {
			rep, m := checkReport(t, c.args...)
			a, _ := m["tls"].(map[string]any)["trust_anchor"].(map[string]any)
			if !tlsStepOK(rep) || a == nil || a["source"] != c.source || (a["path"] != nil || c.path != "") && a["path"] != c.path {
				t.Fatalf("tls step ok %v, anchor %v; want %s %q\n%s", tlsStepOK(rep), a, c.source, c.path, rep.Text())
			}
			text := rep.Text()
			if !strings.Contains(text, "trust_anchor: "+c.source) || c.path != "" && !strings.Contains(text, "trusted: ca_file "+c.path) {
				t.Fatalf("text report does not show the anchor:\n%s", text)
			}
			if c.mssante != strings.Contains(text, "trusted: igc_sante: ") || c.mssante == strings.Contains(text, "trusted: system roots") {
				t.Fatalf("the text report must list the IGC-Santé roots under mssante and the system roots otherwise:\n%s", text)
			}
			if c.name == "mssante, CA file" {
				t.Logf("report:\n%s", text)
			}
		})
	}
}

// TestNoUserCacheDir: without a per-user cache directory the command says so in plain words and runs without a CRL
// cache (never in a directory other users share).
func TestNoUserCacheDir(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	for _, lang := range words.Langs {
		fs := flag.NewFlagSet("check", flag.ContinueOnError)
		tf := addTargetFlags(fs, true)
		if err := fs.Parse([]string{"--imap", "127.0.0.1:993", "--tls-policy", "mssante"}); err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		acct, err := noCardAccount(tf, Env{Stderr: &stderr, Lang: lang})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr.String(), words.T(lang, "cache.none", nil)) || !strings.Contains(stderr.String(), "no per-user cache directory") {
			t.Fatalf("%s: stderr %q", lang, stderr.String())
		}
		if acct.Policy == nil || acct.Policy.Revocation.CacheDir != "" {
			t.Fatalf("%s: policy %+v", lang, acct.Policy)
		}
	}
}

// noCardAccount is the account the flags describe, as a run of the CLI builds it (cacheDir says so on env.Stderr
// when there is no cache), with no card service: the servers of these tests do not ask for a certificate.
func noCardAccount(tf *targetFlags, env Env) (mail.Account, error) {
	p, err := tf.target()
	if err != nil {
		return mail.Account{}, err
	}
	return app.NewAccounts(app.OneManager(nil), app.Dirs{Cache: cacheDir(env)}, -1, 0).Account(p)
}
