package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/words"
)

// runCLI runs cardmail args with buffers for the streams and a stdin that is not a terminal.
func runCLI(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Lang: words.English}
	status = Run(context.Background(), env, args)
	return status, out.String(), errb.String()
}

func TestTargetUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"check"}, "--imap"},
		{[]string{"check", "--profile", "clinic"}, "profile not found"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--tls", "ssl"}, "--tls"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--auth", "kerberos"}, "--auth"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--tls-policy", "lax"}, "--tls-policy"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--repeat", "0"}, "--repeat"},
		{[]string{"check", "--imap", "127.0.0.1:99999"}, "port"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--ca", "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--bogus"}, "bogus"},
		{[]string{"check", "--imap", "127.0.0.1:993", "extra"}, "unexpected"},
		{[]string{"folders", "--smtp", "127.0.0.1:465"}, "--imap"},
		{[]string{"send-test", "--smtp", "127.0.0.1:465", "--user", "a@b.test"}, "--to"},
		{[]string{"send-test", "--imap", "127.0.0.1:993", "--to", "a@b.test"}, "--smtp"},
		{[]string{"send-test", "--smtp", "127.0.0.1:465", "--to", "a@b.test"}, "--user"},
		// with --profile, the flags are validated as without (issue 13: "--repeat 0" used to print nothing, exit 0)
		{[]string{"check", "--profile", "x", "--repeat", "0"}, "--repeat"},
		{[]string{"folders", "--profile", "x", "--repeat", "-3"}, "--repeat"},
		{[]string{"check", "--profile", "x", "--interval", "-1s"}, "--interval"},
		{[]string{"check", "--profile", "x", "--timeout", "0s"}, "--timeout"},
		{[]string{"send-test", "--profile", "x", "--timeout", "-1s", "--to", "a@b.test"}, "--timeout"},
		{[]string{"check", "--profile", "x", "--auth", "kerberos"}, "--auth"},
		{[]string{"check", "--profile", "x", "--tls-policy", "lax"}, "--tls-policy"},
		{[]string{"check", "--profile", "x", "--auth", "plain"}, "cannot be combined with --auth"},
		{[]string{"check", "--profile", "x", "--tls-policy", "default"}, "cannot be combined with --tls-policy"},
		{[]string{"check", "--profile", "x", "--ca", "/etc/hostname"}, "cannot be combined with --ca"},
		{[]string{"check", "--imap", "127.0.0.1:993", "--timeout", "0s"}, "--timeout"},
	}
	for _, c := range cases {
		st, stdout, stderr := runCLI(t, c.args...)
		if st != ExitUsage || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", c.args, st, stdout, stderr, ExitUsage, c.want)
		}
	}
}

func TestServerFlag(t *testing.T) {
	cases := []struct {
		in, sec  string
		wantHost string
		wantPort int
		wantSec  string
	}{
		{"mail.example", "", "mail.example", 993, "implicit"},
		{"mail.example:993", "", "mail.example", 993, "implicit"},
		{"mail.example:143", "", "mail.example", 143, "starttls"},
		{"mail.example:10143", "", "mail.example", 10143, "implicit"},
		{"mail.example:10143", "starttls", "mail.example", 10143, "starttls"},
		{"mail.example", "starttls", "mail.example", 143, "starttls"},
		{"[::1]:1993", "implicit", "::1", 1993, "implicit"},
	}
	for _, c := range cases {
		s, err := server(c.in, profile.Security(c.sec), profile.ProtocolIMAP)
		if err != nil || s.Host != c.wantHost || s.Port != c.wantPort || string(s.Security) != c.wantSec {
			t.Errorf("server(%q, %q) = %+v, %v", c.in, c.sec, s, err)
		}
	}
}

// contractKeys checks the keys of check's JSON against shared/spec/cli-and-diagnosis.md.
func contractKeys(t *testing.T, m map[string]any) {
	t.Helper()
	keys := func(v any) []string {
		mm, _ := v.(map[string]any)
		var k []string
		for key := range mm {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	want := map[string][]string{
		"":       {"card", "code", "message", "ok", "remedy", "server", "steps", "tls"},
		"tls":    {"acceptable_cas", "cipher_suite", "client_cert_requested", "client_cert_sent", "server_chain", "signature_scheme", "trust_anchor", "version"},
		"server": {"capabilities", "greeting"},
		"card":   {"cert_sha256", "reader", "token"},
	}
	for sub, w := range want {
		v := any(m)
		if sub != "" {
			v = m[sub]
		}
		if got := keys(v); !reflect.DeepEqual(got, w) {
			t.Errorf("%q keys %v, want %v", sub, got, w)
		}
	}
	for _, s := range m["steps"].([]any) {
		if got := keys(s); !reflect.DeepEqual(got, []string{"detail", "ms", "ok", "step"}) {
			t.Errorf("step keys %v", got)
		}
	}
	chain := m["tls"].(map[string]any)["server_chain"].([]any)
	for _, c := range chain {
		if got := keys(c); !reflect.DeepEqual(got, []string{"issuer", "not_after", "sha256", "subject"}) {
			t.Errorf("server_chain keys %v", got)
		}
	}
}

// TestCLIAgainstDovecot drives check, folders and send-test through cli.Run against the real Dovecot with the
// bench card, the PIN from CARDMAIL_PIN and a password from CARDMAIL_PASSWORD, and checks that neither secret is
// ever printed.
func TestCLIAgainstDovecot(t *testing.T) {
	b := bench.Start(t)
	d := mailsrv.StartDovecot(t, b.PKI, mailsrv.DovecotOptions{Messages: 2, Folders: 2})
	b.InsertWait(t, 0, 0)
	const password = "Cli-Secret-Passw0rd"
	t.Setenv(EnvPIN, bench.DefaultPIN)
	t.Setenv(EnvPassword, password)
	alice := bench.DefaultEmail(bench.AliceName)
	common := []string{"--ca", d.CAFile, "--module", b.OpenSC, "--user", alice}
	noSecret := func(t *testing.T, outs ...string) {
		t.Helper()
		for _, o := range outs {
			for _, s := range []string{bench.DefaultPIN, password} {
				if strings.Contains(o, s) {
					t.Errorf("secret %q printed:\n%s", s, o)
				}
			}
		}
	}

	t.Run("check json", func(t *testing.T) {
		st, out, errOut := runCLI(t, append([]string{"check", "--imap", d.IMAPS, "--tls", "implicit", "--json"}, common...)...)
		if st != ExitOK {
			t.Fatalf("exit %d\n%s\n%s", st, out, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		contractKeys(t, m)
		if m["ok"] != true || m["code"] != "ok" {
			t.Errorf("not ok: %s", out)
		}
		noSecret(t, out, errOut)
	})
	t.Run("check repeat starttls login", func(t *testing.T) {
		st, out, errOut := runCLI(t, append([]string{"check", "--imap", d.IMAP, "--tls", "starttls", "--auth", "login",
			"--json", "--repeat", "3", "--interval", "10ms"}, common...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if st != ExitOK || len(lines) != 3 {
			t.Fatalf("exit %d, %d lines\n%s\n%s", st, len(lines), out, errOut)
		}
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil || m["ok"] != true {
				t.Errorf("line %q: %v", l, err)
			}
		}
		noSecret(t, out, errOut)
	})
	t.Run("check text", func(t *testing.T) {
		st, out, errOut := runCLI(t, append([]string{"check", "--imap", d.IMAPS, "--tls", "implicit", "--auth", "plain"}, common...)...)
		if st != ExitOK || !strings.Contains(out, "log:") || !strings.Contains(out, "<redacted>") {
			t.Fatalf("exit %d\n%s\n%s", st, out, errOut)
		}
		noSecret(t, out, errOut)
	})
	t.Run("check diagnosed failure", func(t *testing.T) {
		// the right server in the wrong security mode: exit 1 with the code
		st, out, errOut := runCLI(t, append([]string{"check", "--imap", d.IMAP, "--tls", "implicit", "--json"}, common...)...)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: %q %q", err, out, errOut)
		}
		if st != ExitFailure || m["code"] != "wrong_security_mode" {
			t.Errorf("exit %d code %v", st, m["code"])
		}
	})
	t.Run("folders", func(t *testing.T) {
		st, out, errOut := runCLI(t, append([]string{"folders", "--imap", d.IMAPS, "--tls", "implicit", "--json", "--repeat", "2", "--interval", "10ms"}, common...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if st != ExitOK || len(lines) != 2 {
			t.Fatalf("exit %d\n%s\n%s", st, out, errOut)
		}
		var f foldersJSON
		if err := json.Unmarshal([]byte(lines[0]), &f); err != nil {
			t.Fatal(err)
		}
		var inbox bool
		for _, fo := range f.Folders {
			if fo.Name == "INBOX" && fo.Messages == 2 {
				inbox = true
			}
		}
		if !f.OK || !inbox {
			t.Errorf("folders: %s", lines[0])
		}
		noSecret(t, out, errOut)
	})
	t.Run("send-test", func(t *testing.T) {
		st, out, errOut := runCLI(t, append([]string{"send-test", "--smtp", d.SubmissionS, "--tls", "implicit", "--to", alice, "--json"}, common...)...)
		if st != ExitOK {
			t.Fatalf("exit %d\n%s\n%s\n%s", st, out, errOut, d.Log())
		}
		noSecret(t, out, errOut)
	})
	t.Run("no terminal for the PIN", func(t *testing.T) {
		os.Unsetenv(EnvPIN)
		// a new manager: the card must be logged in again, and stdin is a buffer
		b.RemoveWait(t, 0)
		b.InsertWait(t, 0, 0)
		st, out, errOut := runCLI(t, append([]string{"check", "--imap", d.IMAPS, "--tls", "implicit", "--json"}, common...)...)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: %q %q", err, out, errOut)
		}
		if st != ExitFailure || m["code"] != "pin_cancelled" || !strings.Contains(out, "not a terminal") {
			t.Errorf("exit %d: %s", st, out)
		}
	})
}
