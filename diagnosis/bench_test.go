package diagnosis_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/token"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() { // the session manager starts this test binary as its PKCS#11 agent
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// cardFixture is the bench with a session manager fed by a live reader watcher, answering the PIN prompt with the
// bench card's PIN.
type cardFixture struct {
	b *bench.Bench
	m *session.Manager
}

func newCardFixture(t testing.TB) *cardFixture {
	t.Helper()
	b := bench.Start(t)
	m := session.New(session.Config{Module: b.OpenSC,
		PINPrompt: func(ctx context.Context, req session.PINRequest) ([]byte, error) {
			return []byte(bench.DefaultPIN), nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, reader.Watch(ctx)) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	return &cardFixture{b: b, m: m}
}

// insert inserts Alice's card in the first reader and waits until the manager, not only pcscd, knows it (its
// watcher may apply the insertion a little after pcscd reports it).
func (f *cardFixture) insert(t testing.TB) {
	t.Helper()
	f.b.InsertWait(t, 0, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := f.m.Certificates(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session manager does not see the inserted card: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// account builds an account for addr (host:port) with the given policy and trust.
func account(t testing.TB, addr string, sec profile.Security, policy string, caFiles []string) mail.Account {
	t.Helper()
	pol, err := tlspolicy.New(tlspolicy.Name(policy), caFiles, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	srv := profile.Server{Host: host, Port: port, Security: profile.Security(sec)}
	return mail.Account{Address: bench.DefaultEmail(bench.AliceName), IMAP: srv, SMTP: srv, Auth: profile.LoginAuto, Policy: pol}
}

// dovecotAccount is Alice's account on d at addr, logging in with auth (and password, unless auth is auto: the card).
func dovecotAccount(t testing.TB, d *mailsrv.Dovecot, addr string, sec profile.Security, auth profile.Login, password string) mail.Account {
	acct := account(t, addr, sec, "default", []string{d.CAFile})
	acct.Auth = auth
	if auth != profile.LoginAuto {
		acct.Password = password
	}
	return acct
}

// TestScenarios runs the ladder against every misconfigured server of mailsrv.Scenarios() and asserts the exact
// code, with Alice's card inserted and the bench PIN.
func TestScenarios(t *testing.T) {
	f := newCardFixture(t)
	f.insert(t)
	scenarios := mailsrv.Scenarios()
	if len(scenarios) == 0 {
		t.Fatal("mailsrv.Scenarios() is empty")
	}
	seen := map[diagnosis.Code]bool{}
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			ep := sc.Start(t, f.b)
			acct := account(t, ep.Addr, profile.Security(sc.Security), sc.Policy, append([]string{ep.CAFile}, ep.ExtraCAFiles...))
			if h, _, _ := net.SplitHostPort(ep.Addr); h != ep.ServerName {
				t.Fatalf("scenario dials %s but verifies %s: the ladder uses one host for both", ep.Addr, ep.ServerName)
			}
			var sessions *session.Manager
			if !ep.NoClientCert {
				sessions = f.m
			}
			tg := diagnosis.Target{Account: acct, Protocol: sc.Protocol, Timeout: 4 * time.Second,
				GreetingTimeout: 1500 * time.Millisecond}
			rep := diagnosis.Run(context.Background(), sessions, tg)
			want := sc.Want
			if rep.Code != want {
				t.Fatalf("code %s, want %s\n%s", rep.Code, want, rep.Text())
			}
			if rep.OK || len(rep.Steps) == 0 || rep.Steps[len(rep.Steps)-1].OK && rep.Code != diagnosis.ClientCertNotRequested {
				t.Errorf("a failed report must end with a failed step:\n%s", rep.Text())
			}
			if strings.Contains(string(rep.JSON())+rep.Text(), bench.DefaultPIN) {
				t.Errorf("PIN in the report")
			}
			seen[rep.Code] = true
		})
	}
	t.Logf("codes produced: %d", len(seen))
}

// TestDovecotHappyPath checks ok with every step against the real Dovecot (+ Postfix), IMAP and SMTP, implicit TLS
// and STARTTLS, logging in with the card (SASL EXTERNAL), and with LOGIN + password; the report and its log must
// never hold the PIN or the password.
func TestDovecotHappyPath(t *testing.T) {
	f := newCardFixture(t)
	d := mailsrv.StartDovecot(t, f.b.PKI, mailsrv.DovecotOptions{Messages: 2, Folders: 3})
	f.insert(t)
	alice := bench.DefaultEmail(bench.AliceName)
	const password = "Sup3r-Secret-Passw0rd"
	cases := []struct {
		name, addr, protocol string
		sec                  profile.Security
		auth                 profile.Login
		steps                []string
	}{
		{"imap implicit", d.IMAPS, diagnosis.ProtocolIMAP, profile.Implicit, profile.LoginAuto,
			[]string{"dns", "connect", "tls", "client_cert", "greeting", "auth", "list"}},
		{"imap starttls", d.IMAP, diagnosis.ProtocolIMAP, profile.StartTLS, profile.LoginAuto,
			[]string{"dns", "connect", "greeting", "starttls", "tls", "client_cert", "auth", "list"}},
		{"smtp implicit", d.SubmissionS, diagnosis.ProtocolSMTP, profile.Implicit, profile.LoginAuto,
			[]string{"dns", "connect", "tls", "client_cert", "greeting", "auth", "send"}},
		{"smtp starttls", d.Submission, diagnosis.ProtocolSMTP, profile.StartTLS, profile.LoginAuto,
			[]string{"dns", "connect", "greeting", "starttls", "tls", "client_cert", "auth", "send"}},
		{"imap login with password", d.IMAPS, diagnosis.ProtocolIMAP, profile.Implicit, profile.LoginLogin, nil},
		{"imap plain with password", d.IMAP, diagnosis.ProtocolIMAP, profile.StartTLS, profile.LoginPlain, nil},
		{"smtp plain with password", d.Submission, diagnosis.ProtocolSMTP, profile.StartTLS, profile.LoginPlain, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acct := dovecotAccount(t, d, c.addr, c.sec, c.auth, password)
			tg := diagnosis.Target{Account: acct, Protocol: c.protocol, Timeout: 10 * time.Second}
			if c.protocol == diagnosis.ProtocolSMTP {
				tg.SendTo = alice
			}
			rep := diagnosis.Run(context.Background(), f.m, tg)
			if !rep.OK || rep.Code != diagnosis.OK {
				t.Fatalf("code %s\n%s\n%s", rep.Code, rep.Text(), d.Log())
			}
			names := []string{}
			for _, s := range rep.Steps {
				names = append(names, s.Name)
				if !s.OK {
					t.Errorf("step %s not ok", s.Name)
				}
			}
			if c.steps != nil && !slices.Equal(names, c.steps) {
				t.Errorf("steps %v, want %v", names, c.steps)
			}
			if rep.TLS.ClientCertSent == nil || *rep.TLS.ClientCertSent != rep.Card.CertSHA256 || !rep.TLS.ClientCertRequested {
				t.Errorf("client certificate facts: %+v card %+v", rep.TLS, rep.Card)
			}
			if rep.Card.Reader != f.b.Readers[0] || rep.TLS.Version == "" || len(rep.TLS.ServerChain) == 0 ||
				len(rep.Server.Capabilities) == 0 || rep.Server.Greeting == "" {
				t.Errorf("facts missing:\n%s", rep.Text())
			}
			all := string(rep.JSON()) + rep.Text() + strings.Join(rep.Log, "\n")
			for _, secret := range []string{bench.DefaultPIN, password} {
				if strings.Contains(all, secret) {
					t.Errorf("secret %q in the report:\n%s", secret, rep.Text())
				}
			}
		})
	}
}

// ladderRuns is how many check ladders BenchmarkCheckLadder times (and as many curl runs, interleaved).
const ladderRuns = 9

// BenchmarkCheckLadder times ladderRuns full check ladders (IMAP implicit TLS with the card, EXTERNAL, LIST with
// counts) against Dovecot on loopback, and prints the median time per step and in all. Baseline in the same run,
// interleaved: what IT support would run instead to check the same account, curl (one process, the card's key
// exported to a file) making the same connection and LIST-STATUS, logging in as curl does (its SASL choice, empty
// password: this Dovecot takes the mailbox from the certificate); a bare TCP connect to the same port is printed
// for scale.
func BenchmarkCheckLadder(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Fatal("curl not found: install it with scripts/install-deps.sh")
	}
	f := newCardFixture(b)
	d := mailsrv.StartDovecot(b, f.b.PKI, mailsrv.DovecotOptions{Messages: 10, Folders: 20})
	f.insert(b)
	acct := account(b, d.IMAPS, profile.Implicit, "default", []string{d.CAFile})
	tg := diagnosis.Target{Account: acct, Protocol: diagnosis.ProtocolIMAP, Timeout: 10 * time.Second}
	if rep := diagnosis.Run(context.Background(), f.m, tg); !rep.OK { // warm-up: PIN, agent
		b.Fatalf("%s", rep.Text())
	}
	curlArgs := []string{"--silent", "--show-error", "--max-time", "20", "--cacert", d.CAFile,
		"--cert", f.b.Alice.CertFile, "--key", f.b.Alice.KeyFile, "--user", acct.Address + ":", "imaps://" + d.IMAPS + "/", "-X", `LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))`}
	curl56 := 0
	runCurl := func(extra ...string) string {
		b.Helper()
		out, err := exec.Command(curl, append(curlArgs, extra...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 56 {
			curl56++ // curl 7.88 reports a receive error when Dovecot closes after LOGOUT; the answer is checked
			err = nil
		}
		if err != nil || strings.Count(string(out), "* LIST") < 21 {
			b.Fatalf("curl: %v\n%.2000s", err, out)
		}
		return string(out)
	}
	// curl prints only the untagged responses named like the command (LIST): its trace shows the STATUS ones came.
	if out := runCurl("--trace-ascii", "-"); strings.Count(out, "* STATUS") < 21 {
		b.Fatalf("curl's LIST-STATUS brought no counts:\n%.4000s", out)
	}
	var order []string
	steps := map[string][]time.Duration{}
	var ladders, curls, tcps []time.Duration
	for b.Loop() {
		for range ladderRuns {
			start := time.Now()
			rep := diagnosis.Run(context.Background(), f.m, tg)
			ladders = append(ladders, time.Since(start))
			if !rep.OK {
				b.Fatalf("%s", rep.Text())
			}
			for _, s := range rep.Steps {
				if _, ok := steps[s.Name]; !ok {
					order = append(order, s.Name)
				}
				steps[s.Name] = append(steps[s.Name], time.Duration(s.Ms*float64(time.Millisecond)))
			}

			start = time.Now()
			runCurl()
			curls = append(curls, time.Since(start))

			start = time.Now()
			c, err := net.DialTimeout("tcp", d.IMAPS, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			tcps = append(tcps, time.Since(start))
			c.Close()
		}
	}
	msOf := func(ds []time.Duration) float64 { return float64(medianD(ds)) / float64(time.Millisecond) }
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\nmedians of %d interleaved runs\n%-12s %10s\n", ladderRuns, "step", "median ms")
	for _, n := range order {
		fmt.Fprintf(&tbl, "%-12s %10.2f\n", n, msOf(steps[n]))
	}
	fmt.Fprintf(&tbl, "%-12s %10.2f  (diagnosis.Run, wall time)\n", "total", msOf(ladders))
	fmt.Fprintf(&tbl, "%-12s %10.2f  (curl, one process, key file: connect+TLS+login+LIST-STATUS, same run)\n", "baseline", msOf(curls))
	fmt.Fprintf(&tbl, "%-12s %10.3f  (bare TCP connect, same run, for scale)\n", "tcp", msOf(tcps))
	fmt.Fprintf(&tbl, "curl exit 56 after a complete answer: %d of %d runs\n", curl56, len(curls)+1)
	b.Log(tbl.String())
	b.ReportMetric(msOf(ladders), "ladder-ms")
	b.ReportMetric(msOf(curls), "curl-ms")
	b.ReportMetric(msOf(tcps), "tcp-connect-ms")
	b.ReportMetric(ladderRuns, "runs")
}

func medianD(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// mutf7 encodes a mailbox name the way it travels in IMAP (modified UTF-7, RFC 3501 section 5.1.3).
func mutf7(s string) string {
	var b strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		buf := make([]byte, 2*len(run))
		for i, u := range run {
			binary.BigEndian.PutUint16(buf[2*i:], u)
		}
		b.WriteString("&" + strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(buf), "/", ",") + "-")
		run = nil
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			b.WriteRune(r)
		default:
			run = append(run, utf16.Encode([]rune{r})...)
		}
	}
	flush()
	return b.String()
}

// TestReportsNameNoFolderOrAddress runs real diagnoses against Dovecot and Postfix (IMAP and SMTP, implicit TLS and
// STARTTLS, with the card and with a password, a message sent, a recipient refused) on a mailbox whose folders carry
// patients' names (non-ASCII too) and whose messages carry addresses, and greps every report (JSON, text and
// protocol log) for each folder name (as written and as it travels in IMAP), each distinctive word of them, and every
// address of the mailbox. The folders are first shown to exist on the server, and the reports to count them.
func TestReportsNameNoFolderOrAddress(t *testing.T) {
	f := newCardFixture(t)
	d := mailsrv.StartDovecot(t, f.b.PKI, mailsrv.DovecotOptions{Messages: 1})
	f.insert(t)
	alice := bench.DefaultEmail(bench.AliceName)
	bruno := bench.DefaultEmail(bench.BrunoName)
	const sender = "zoe.kowalczyk@labo-analyses.example"
	const unknown = "patient.inconnu@cardmail.test"
	folders := []string{"Éloïse Dupont-Ünal", "Dossier Zoé Œillet 2026", "Résultats 血液 Jean-Baptiste", "Kowalczyk & Fils"}
	words := []string{"Dupont", "Eloise", "Zoé", "Œillet", "Jean-Baptiste", "Kowalczyk", "血液"}
	const password = "Privacy-Passw0rd-42"

	// The folders and a message with addresses and a patient's name, made through a plain IMAP client with Alice's
	// key in memory (not through the code under test).
	raw := "From: Dr Zoé Kowalczyk <" + sender + ">\r\nTo: <" + alice + ">\r\nSubject: Résultats de Éloïse Dupont-Ünal\r\n" +
		"Message-ID: <privacy.1@labo-analyses.example>\r\n\r\nHémoglobine normale.\r\n"
	d.Deliver(t, alice, []byte(raw))
	pem, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	key, err := tls.X509KeyPair(f.b.Alice.CertPEM, f.b.Alice.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := imapclient.DialTLS(d.IMAPS, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool,
		ServerName: "127.0.0.1", Certificates: []tls.Certificate{key}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	for _, name := range folders {
		if err := ic.Create(name, nil).Wait(); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	listed, err := ic.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	ic.Close()
	onServer := map[string]bool{}
	for _, l := range listed {
		onServer[l.Mailbox] = true
	}
	for _, name := range folders {
		if !onServer[name] {
			t.Fatalf("folder %q not on the server (%v)", name, onServer)
		}
	}
	forbidden := []string{alice, bruno, sender, unknown, strings.Split(alice, "@")[0], strings.Split(bruno, "@")[0],
		strings.Split(sender, "@")[0], strings.Split(unknown, "@")[0], password, bench.DefaultPIN}
	for _, name := range folders {
		forbidden = append(forbidden, name, mutf7(name))
	}
	forbidden = append(forbidden, words...)

	cases := []struct {
		name, addr, protocol, to string
		sec                      profile.Security
		auth                     profile.Login
		wantOK                   bool
	}{
		{"imap implicit card", d.IMAPS, diagnosis.ProtocolIMAP, "", profile.Implicit, profile.LoginAuto, true},
		{"imap starttls password", d.IMAP, diagnosis.ProtocolIMAP, "", profile.StartTLS, profile.LoginLogin, true},
		{"imap implicit plain", d.IMAPS, diagnosis.ProtocolIMAP, "", profile.Implicit, profile.LoginPlain, true},
		{"smtp starttls send", d.Submission, diagnosis.ProtocolSMTP, bruno, profile.StartTLS, profile.LoginAuto, true},
		{"smtp implicit sender only", d.SubmissionS, diagnosis.ProtocolSMTP, "", profile.Implicit, profile.LoginAuto, true},
		{"smtp plain password send", d.Submission, diagnosis.ProtocolSMTP, alice, profile.StartTLS, profile.LoginPlain, true},
		{"smtp unknown local recipient", d.SubmissionS, diagnosis.ProtocolSMTP, unknown, profile.Implicit, profile.LoginAuto, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acct := dovecotAccount(t, d, c.addr, c.sec, c.auth, password)
			tg := diagnosis.Target{Account: acct, Protocol: c.protocol, SendTo: c.to, Timeout: 10 * time.Second}
			rep := diagnosis.Run(context.Background(), f.m, tg)
			if c.wantOK && !rep.OK {
				t.Fatalf("code %s\n%s\n%s", rep.Code, rep.Text(), d.Log())
			}
			all := string(rep.JSON()) + "\n" + rep.Text() + "\n" + strings.Join(rep.Log, "\n")
			for _, s := range forbidden {
				if strings.Contains(strings.ToLower(all), strings.ToLower(s)) {
					t.Errorf("%q in the report:\n%s", s, all)
				}
			}
			last := rep.Steps[len(rep.Steps)-1]
			switch {
			case c.protocol == diagnosis.ProtocolIMAP:
				// every folder is counted: INBOX and the four, and the log shows one LIST line for each
				want := fmt.Sprintf("%d folders, ", len(listed))
				if !strings.HasPrefix(last.Detail, want) || strings.Count(all, "\n  * LIST") != len(listed) {
					t.Errorf("list step %q, want it to start with %q and %d LIST lines in the log:\n%s", last.Detail,
						want, len(listed), all)
				}
			case c.to != "" && c.wantOK:
				if !strings.Contains(last.Detail, "accepted for 1 recipient") {
					t.Errorf("send step %q", last.Detail)
				}
			}
			t.Logf("%s: %s, last step %s %q, %d log lines", c.name, rep.Code, last.Name, last.Detail, len(rep.Log))
		})
	}
}
