package diagnosis

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/tlspolicy"
)

// stubPKI is a test CA with a server certificate for 127.0.0.1, shared by the stub servers of this file.
type stubPKI struct {
	pki    *bench.PKI
	cert   tls.Certificate
	caFile string
}

func newStubPKI(t testing.TB) *stubPKI {
	t.Helper()
	pki, err := bench.NewPKI(t.TempDir(), "Ladder Test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.ServerCert("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &stubPKI{pki: pki, cert: cert, caFile: filepath.Join(pki.Dir, "ca.pem")}
}

// serve runs handle for every connection to a new 127.0.0.1 listener until the test ends.
func serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// imapStub is a minimal IMAP server: greeting, CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE PLAIN, LIST, STATUS,
// LOGOUT. It records the lines it received.
type imapStub struct {
	p         *stubPKI
	starttls  bool // offer STARTTLS on the plaintext greeting
	tlsConfig *tls.Config
	mu        sync.Mutex
	got       []string
}

func (s *imapStub) handle(c net.Conn, implicit bool) {
	var conn = c
	if implicit {
		tc := tls.Server(c, s.tlsConfig)
		if tc.Handshake() != nil {
			return
		}
		conn = tc
	}
	r := bufio.NewReader(conn)
	caps := "IMAP4rev1 SASL-IR AUTH=PLAIN LIST-STATUS"
	if !implicit && s.starttls {
		caps = "IMAP4rev1 STARTTLS LOGINDISABLED"
	}
	io.WriteString(conn, "* OK [CAPABILITY "+caps+"] stub ready\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.got = append(s.got, line)
		s.mu.Unlock()
		tag, rest, _ := strings.Cut(line, " ")
		cmd, _, _ := strings.Cut(rest, " ")
		switch strings.ToUpper(cmd) {
		case "CAPABILITY":
			io.WriteString(conn, "* CAPABILITY "+caps+"\r\n"+tag+" OK done\r\n")
		case "STARTTLS":
			io.WriteString(conn, tag+" OK begin TLS\r\n")
			tc := tls.Server(c, s.tlsConfig)
			if tc.Handshake() != nil {
				return
			}
			conn, r = tc, bufio.NewReader(tc)
			caps = "IMAP4rev1 SASL-IR AUTH=PLAIN"
		case "LOGIN", "AUTHENTICATE":
			io.WriteString(conn, tag+" OK logged in\r\n")
		case "LIST":
			io.WriteString(conn, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\Noselect) \"/\" {4}\r\nWork\r\n")
			if strings.Contains(rest, "RETURN") {
				io.WriteString(conn, "* STATUS INBOX (MESSAGES 3 UNSEEN 1)\r\n")
			}
			io.WriteString(conn, tag+" OK listed\r\n")
		case "STATUS":
			io.WriteString(conn, "* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 1)\r\n"+tag+" OK status\r\n")
		case "LOGOUT":
			io.WriteString(conn, "* BYE\r\n"+tag+" OK bye\r\n")
			return
		default:
			io.WriteString(conn, tag+" BAD unknown\r\n")
		}
	}
}

func (p *stubPKI) target(t testing.TB, addr string, sec profile.Security, protocol string) Target {
	t.Helper()
	pol, err := tlspolicy.New(tlspolicy.Default, []string{p.caFile}, "")
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	srv := profile.Server{Host: host, Port: port, Security: sec}
	return Target{Account: mail.Account{Address: "alice@example.test", IMAP: srv, SMTP: srv, Auth: profile.LoginAuto,
		Password: "Pa55-secret-word", Policy: pol}, Protocol: protocol, Timeout: 5 * time.Second,
		GreetingTimeout: 700 * time.Millisecond}
}

func stepNames(r *Report) []string {
	var n []string
	for _, s := range r.Steps {
		n = append(n, s.Name)
	}
	return n
}

// TestLadderStub runs the ladder without a card against in-process servers: the happy paths (implicit and
// STARTTLS), and failures that need no card.
func TestLadderStub(t *testing.T) {
	p := newStubPKI(t)
	stub := &imapStub{p: p, starttls: true, tlsConfig: &tls.Config{Certificates: []tls.Certificate{p.cert}}}
	implicit := serve(t, func(c net.Conn) { stub.handle(c, true) })
	plain := serve(t, func(c net.Conn) { stub.handle(c, false) })
	noSTARTTLS := serve(t, func(c net.Conn) {
		(&imapStub{p: p, tlsConfig: stub.tlsConfig}).handle(c, false)
	})
	tls10 := serve(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		_ = tc.Handshake()
	})
	refusedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := refusedLn.Addr().String()
	refusedLn.Close()

	cases := []struct {
		name     string
		addr     string
		sec      profile.Security
		mutate   func(*Target)
		want     Code
		wantStep []string
	}{
		{"implicit ok", implicit, profile.Implicit, nil, OK,
			[]string{"dns", "connect", "tls", "client_cert", "greeting", "auth", "list"}},
		{"starttls ok", plain, profile.StartTLS, nil, OK,
			[]string{"dns", "connect", "greeting", "starttls", "tls", "client_cert", "auth", "list"}},
		{"login", implicit, profile.Implicit, func(t *Target) { t.Account.Auth = profile.LoginLogin }, OK, nil},
		{"implicit to plaintext port", plain, profile.Implicit, nil, WrongSecurityMode, nil},
		{"starttls to TLS port", implicit, profile.StartTLS, nil, WrongSecurityMode, nil},
		{"no STARTTLS", noSTARTTLS, profile.StartTLS, nil, StartTLSUnavailable, nil},
		{"refused", refused, profile.Implicit, nil, ConnectRefused, []string{"dns", "connect"}},
		{"TLS 1.0 server", tls10, profile.Implicit, nil, TLSVersionMismatch, nil},
		{"dns", implicit, profile.Implicit, func(t *Target) { t.Account.IMAP.Host = "nonexistent.invalid" }, DNSError, []string{"dns"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := p.target(t, c.addr, c.sec, ProtocolIMAP)
			if c.mutate != nil {
				c.mutate(&tg)
			}
			rep := Run(context.Background(), nil, tg)
			if rep.Code != c.want || rep.OK != (c.want == OK) {
				t.Fatalf("code %s ok=%t, want %s\n%s", rep.Code, rep.OK, c.want, rep.Text())
			}
			if c.wantStep != nil && !slices.Equal(stepNames(rep), c.wantStep) {
				t.Errorf("steps %v, want %v", stepNames(rep), c.wantStep)
			}
			if rep.OK {
				for _, s := range rep.Steps {
					if !s.OK {
						t.Errorf("step %s failed in an ok report", s.Name)
					}
				}
				if rep.TLS.Version == "" || len(rep.TLS.ServerChain) == 0 {
					t.Errorf("TLS facts missing: %+v", rep.TLS)
				}
			}
			checkNoSecret(t, rep, tg.Account.Password)
		})
	}
}

// checkNoSecret fails when secret appears anywhere in the report's JSON, text or log.
func checkNoSecret(t *testing.T, rep *Report, secrets ...string) {
	t.Helper()
	all := string(rep.JSON()) + rep.Text() + strings.Join(rep.Log, "\n")
	for _, s := range secrets {
		if s != "" && strings.Contains(all, s) {
			t.Errorf("secret %q leaked into the report:\n%s", s, rep.Text())
		}
	}
}

// TestRedactedLog checks that LOGIN and AUTHENTICATE arguments never reach the log, while the server did receive
// them.
func TestRedactedLog(t *testing.T) {
	p := newStubPKI(t)
	stub := &imapStub{p: p, tlsConfig: &tls.Config{Certificates: []tls.Certificate{p.cert}}}
	addr := serve(t, func(c net.Conn) { stub.handle(c, true) })
	for _, auth := range []profile.Login{profile.LoginLogin, profile.LoginPlain} {
		tg := p.target(t, addr, profile.Implicit, ProtocolIMAP)
		tg.Account.Auth = auth
		rep := Run(context.Background(), nil, tg)
		if !rep.OK {
			t.Fatalf("%s: %s", auth, rep.Text())
		}
		checkNoSecret(t, rep, tg.Account.Password, "\x00"+tg.Account.Address)
		var sawRedacted bool
		for _, l := range rep.Log {
			if strings.Contains(l, Redacted) {
				sawRedacted = true
			}
		}
		if !sawRedacted {
			t.Errorf("%s: no redacted line in the log: %q", auth, rep.Log)
		}
		if rep.Message != "" || rep.Remedy != "" {
			t.Errorf("the diagnosis wrote words (%q, %q): they are the edge's", rep.Message, rep.Remedy)
		}
	}
	stub.mu.Lock()
	defer stub.mu.Unlock()
	if !strings.Contains(strings.Join(stub.got, "\n"), "Pa55-secret-word") {
		t.Errorf("the server never got the password: %q", stub.got)
	}
}

// TestReportJSONShape checks the JSON keys against the contract (shared/spec/cli-and-diagnosis.md).
func TestReportJSONShape(t *testing.T) {
	r := Failed(StepClientCert, errBadCardForTest)
	var m map[string]any
	if err := json.Unmarshal(r.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	ContractShape(t, m)
	if m["tls"].(map[string]any)["client_cert_sent"] != nil {
		t.Errorf("client_cert_sent should be null")
	}
	s := "ab12"
	r.TLS.ClientCertSent = &s
	_ = json.Unmarshal(r.JSON(), &m)
	if m["tls"].(map[string]any)["client_cert_sent"] != "ab12" {
		t.Errorf("client_cert_sent: %v", m["tls"])
	}
	if !strings.Contains(r.Text(), "client_cert") {
		t.Errorf("text lacks the step: %s", r.Text())
	}
}

var errBadCardForTest = ErrBadTarget

// ContractShape fails t unless m has exactly the keys of the contract's check JSON, at every level.
func ContractShape(t testing.TB, m map[string]any) {
	t.Helper()
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
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
	if got := keys(m); !reflect.DeepEqual(got, want[""]) {
		t.Errorf("top-level keys %v, want %v", got, want[""])
	}
	for _, sub := range []string{"tls", "server", "card"} {
		mm, ok := m[sub].(map[string]any)
		if !ok {
			t.Errorf("%s is %T", sub, m[sub])
			continue
		}
		if got := keys(mm); !reflect.DeepEqual(got, want[sub]) {
			t.Errorf("%s keys %v, want %v", sub, got, want[sub])
		}
	}
	steps, ok := m["steps"].([]any)
	if !ok {
		t.Fatalf("steps is %T", m["steps"])
	}
	for _, s := range steps {
		if got := keys(s.(map[string]any)); !reflect.DeepEqual(got, []string{"detail", "ms", "ok", "step"}) {
			t.Errorf("step keys %v", got)
		}
	}
	for _, k := range []string{"server_chain", "acceptable_cas"} {
		if _, ok := m["tls"].(map[string]any)[k].([]any); !ok {
			t.Errorf("tls.%s is not a list", k)
		}
	}
}

// TestLibConn: the connection lent to the protocol libraries replays what the ladder read, keeps the first line and
// the first typed error, ignores the libraries' deadlines, and is handed back at the library's first TLS byte.
func TestLibConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		_, _ = b.Write([]byte("a1 OK\r\n"))
		buf := make([]byte, 64)
		n, _ := b.Read(buf)
		if string(buf[:n]) != "a2 STARTTLS\r\n" {
			t.Errorf("server read %q", buf[:n])
		}
		b.Close()
	}()
	lc := &libConn{Conn: a, replay: []byte("* OK ready\r\n"), plaintext: true}
	if err := lc.SetDeadline(time.Now().Add(-time.Hour)); err != nil { // ignored: a past deadline would fail reads
		t.Fatal(err)
	}
	got := make([]byte, 64)
	n, err := io.ReadAtLeast(lc, got, len("* OK ready\r\na1 OK\r\n"))
	if err != nil || string(got[:n]) != "* OK ready\r\na1 OK\r\n" {
		t.Fatalf("read %q %v", got[:n], err)
	}
	if line, ok := lc.firstLine(); !ok || line != "* OK ready" {
		t.Errorf("first line %q %v", line, ok)
	}
	if _, err := lc.Write([]byte("a2 STARTTLS\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Read(got); err != io.EOF {
		t.Fatalf("read after the server closed: %v", err)
	}
	if err := lc.explain(errors.New("in response: EOF")); !errors.Is(err, io.EOF) {
		t.Errorf("explain kept no type: %v", err)
	}
	if _, err := lc.Write([]byte{0x16, 0x03, 0x01}); !errors.Is(err, errHandedOver) || !lc.handedAtTLS() {
		t.Errorf("ClientHello write: %v, handed %v", err, lc.handedAtTLS())
	}
	if _, err := lc.Read(got); !errors.Is(err, errHandedOver) || lc.Close() != nil {
		t.Errorf("after hand-over: %v", err)
	}
}

// dripServer is an IMAP or SMTP server on loopback that answers normally until the dialogue reaches stallAt, then
// drip-feeds: a line (or, inside a greeting, a byte) every 50 ms, forever, so that no read ever times out. It closes
// stalled when it starts dripping or stalling.
type dripServer struct {
	p        *stubPKI
	smtp     bool
	implicit bool
	stallAt  string // "greeting", "starttls", "tls", "auth", "list", "send", "probe"
	stalled  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	conns    int
}

func (s *dripServer) stall(c net.Conn, line string) {
	s.once.Do(func() { close(s.stalled) })
	for {
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *dripServer) handle(c net.Conn) {
	s.mu.Lock()
	s.conns++
	n := s.conns
	s.mu.Unlock()
	if s.stallAt == "probe" && n > 1 { // the follow-up probe's connection: its ClientHello is never answered
		s.once.Do(func() { close(s.stalled) })
		_, _ = io.Copy(io.Discard, c)
		return
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{s.p.cert}}
	conn := c
	if s.implicit {
		if s.stallAt == "tls" { // the ClientHello is never answered
			s.once.Do(func() { close(s.stalled) })
			_, _ = io.Copy(io.Discard, c)
			return
		}
		tc := tls.Server(c, tlsCfg)
		if tc.Handshake() != nil {
			return
		}
		conn = tc
	}
	if s.stallAt == "greeting" { // a greeting that never ends
		if s.smtp {
			s.stall(conn, "220-drip\r\n")
		} else if _, err := io.WriteString(conn, "* OK "); err == nil {
			s.stall(conn, "x")
		}
		return
	}
	if s.stallAt == "probe" { // silent until the ladder's greeting timeout sends a probe
		_, _ = io.Copy(io.Discard, conn)
		return
	}
	r := bufio.NewReader(conn)
	if s.smtp {
		io.WriteString(conn, "220 drip ESMTP\r\n")
	} else {
		io.WriteString(conn, "* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR] drip\r\n")
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		cmd := strings.ToUpper(tag)
		if !s.smtp {
			cmd, _, _ = strings.Cut(strings.ToUpper(rest), " ")
		}
		stallLine := "* 1 EXISTS\r\n"
		if s.smtp {
			stallLine = "250-still working\r\n"
		}
		switch {
		case cmd == "STARTTLS" && s.stallAt == "starttls",
			(cmd == "LOGIN" || cmd == "AUTHENTICATE" || cmd == "AUTH") && s.stallAt == "auth",
			cmd == "LIST" && s.stallAt == "list",
			cmd == "MAIL" && s.stallAt == "send":
			s.stall(conn, stallLine)
			return
		case cmd == "STARTTLS":
			if s.smtp {
				io.WriteString(conn, "220 go\r\n")
			} else {
				io.WriteString(conn, tag+" OK go\r\n")
			}
			tc := tls.Server(c, tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			conn, r = tc, bufio.NewReader(tc)
		case s.smtp && (cmd == "EHLO" || cmd == "HELO"):
			io.WriteString(conn, "250-drip\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")
		case s.smtp && cmd == "AUTH":
			io.WriteString(conn, "235 ok\r\n")
		case s.smtp:
			io.WriteString(conn, "250 ok\r\n")
		case cmd == "CAPABILITY":
			io.WriteString(conn, "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n"+tag+" OK done\r\n")
		default:
			io.WriteString(conn, tag+" OK done\r\n")
		}
	}
}

// TestCancelDuringEveryStep cancels a diagnosis while a server drip-feeds (or stalls) at each step, including after
// the TLS handshake and during a follow-up probe, and checks that Run returns within a second of the cancellation,
// with the stalled step failed by it. The step and greeting timeouts are a minute, so only the cancellation can end
// these runs; the time from cancel to return is printed.
func TestCancelDuringEveryStep(t *testing.T) {
	p := newStubPKI(t)
	cases := []struct {
		name     string
		smtp     bool
		sec      profile.Security
		stallAt  string
		wantStep string
	}{
		{"imap starttls greeting", false, profile.StartTLS, "greeting", StepGreeting},
		{"imap starttls probe", false, profile.StartTLS, "probe", StepGreeting},
		{"imap starttls command", false, profile.StartTLS, "starttls", StepStartTLS},
		{"imap tls handshake", false, profile.Implicit, "tls", StepTLS},
		{"imap greeting after tls", false, profile.Implicit, "greeting", StepGreeting},
		{"imap auth", false, profile.Implicit, "auth", StepAuth},
		{"imap auth after starttls", false, profile.StartTLS, "auth", StepAuth},
		{"imap list", false, profile.Implicit, "list", StepList},
		{"smtp greeting after tls", true, profile.Implicit, "greeting", StepGreeting},
		{"smtp starttls greeting", true, profile.StartTLS, "greeting", StepGreeting},
		{"smtp starttls command", true, profile.StartTLS, "starttls", StepStartTLS},
		{"smtp auth", true, profile.Implicit, "auth", StepAuth},
		{"smtp send", true, profile.Implicit, "send", StepSend},
	}
	var worst time.Duration
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &dripServer{p: p, smtp: c.smtp, implicit: c.sec == profile.Implicit, stallAt: c.stallAt,
				stalled: make(chan struct{})}
			addr := serve(t, s.handle)
			proto := ProtocolIMAP
			if c.smtp {
				proto = ProtocolSMTP
			}
			tg := p.target(t, addr, c.sec, proto)
			tg.Account.Auth = profile.LoginPlain
			tg.Timeout, tg.GreetingTimeout = time.Minute, time.Minute
			if c.stallAt == "probe" {
				tg.GreetingTimeout = 200 * time.Millisecond
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan *Report, 1)
			go func() { done <- Run(ctx, nil, tg) }()
			select {
			case <-s.stalled:
			case rep := <-done:
				t.Fatalf("the run ended before the server stalled:\n%s", rep.Text())
			case <-time.After(20 * time.Second):
				t.Fatal("the server never stalled")
			}
			time.Sleep(100 * time.Millisecond) // well inside the stalled step
			cancelled := time.Now()
			cancel()
			var rep *Report
			select {
			case rep = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return 10 s after the cancellation")
			}
			took := time.Since(cancelled)
			worst = max(worst, took)
			t.Logf("cancel → return: %v", took)
			if took > time.Second {
				t.Errorf("Run returned %v after the cancellation, want within a second", took)
			}
			last := rep.Steps[len(rep.Steps)-1]
			if rep.OK || last.Name != c.wantStep || last.OK || !strings.Contains(last.Detail, "context canceled") {
				t.Errorf("want the %s step failed by the cancellation:\n%s", c.wantStep, rep.Text())
			}
		})
	}
	t.Logf("worst cancel → return over %d steps: %v", len(cases), worst)
}

// tlsLineServer serves implicit TLS with p's certificate on loopback: greeting, then answer(line) for each line the
// client sends (CRLF included).
func tlsLineServer(t *testing.T, p *stubPKI, greeting string, answer func(line string) string) string {
	return serve(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{p.cert}})
		if tc.Handshake() != nil {
			return
		}
		r := bufio.NewReader(tc)
		io.WriteString(tc, greeting)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(tc, answer(line))
		}
	})
}

// TestReportHidesEchoedAddresses: servers that echo the account's address or the recipient in a refusal (Postfix's
// "Recipient address rejected", a login refusal naming the user) do not put them in the report: the log keeps
// response codes only, and the step detail and error show AddressOmitted where the address was.
func TestReportHidesEchoedAddresses(t *testing.T) {
	p := newStubPKI(t)
	const user, to = "Alice.Martin@Example.test", "patient.dupont@example.test"
	smtpAddr := tlsLineServer(t, p, "220 stub ESMTP\r\n", func(line string) string {
		switch cmd := strings.ToUpper(line); {
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-stub greets " + strings.ToLower(user) + "\r\n250 AUTH PLAIN\r\n"
		case strings.HasPrefix(cmd, "AUTH"):
			return "235 2.7.0 " + user + " logged in\r\n"
		case strings.HasPrefix(cmd, "MAIL"):
			return "250 2.1.0 <" + user + "> ok\r\n"
		case strings.HasPrefix(cmd, "RCPT"):
			return "553 5.7.1 <" + strings.ToUpper(to) + ">: Recipient address rejected\r\n"
		}
		return "250 ok\r\n"
	})
	imapAddr := tlsLineServer(t, p, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] stub ready\r\n", func(line string) string {
		tag, _, _ := strings.Cut(line, " ")
		return tag + " NO [AUTHENTICATIONFAILED] unknown user " + user + "\r\n"
	})
	for _, c := range []struct {
		addr, protocol string
		want           Code
	}{{smtpAddr, ProtocolSMTP, ProtocolError}, {imapAddr, ProtocolIMAP, AuthFailed}} {
		tg := p.target(t, c.addr, profile.Implicit, c.protocol)
		tg.Account.Address, tg.SendTo, tg.Account.Auth = user, to, profile.LoginPlain
		rep := Run(context.Background(), nil, tg)
		all := strings.ToLower(string(rep.JSON()) + rep.Text())
		if rep.Code != c.want || !strings.Contains(all, AddressOmitted) {
			t.Errorf("%s: code %s, want %s and %q in the report:\n%s", c.protocol, rep.Code, c.want, AddressOmitted, rep.Text())
		}
		for _, a := range []string{user, to, "alice.martin", "patient.dupont"} {
			if strings.Contains(all, strings.ToLower(a)) {
				t.Errorf("%s: %q in the report:\n%s", c.protocol, a, rep.Text())
			}
		}
	}
}
