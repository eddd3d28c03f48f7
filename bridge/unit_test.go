package bridge_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
)

// loginIMAP logs a go-imap client in through the bridge.
func loginIMAP(t *testing.T, addr, user, pw string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login through the bridge: %v", err)
	}
	return c
}

// TestIMAPRelay: a go-imap client logs in with the bridge password and works on the upstream mailbox as it would
// directly (LIST with non-ASCII names, SELECT, FETCH, APPEND with a literal); capabilities are adjusted; the upstream
// login used the card (one PIN prompt, one signature).
func TestIMAPRelay(t *testing.T) {
	f := newUnitFixture(t, unitOptions{})
	user := f.acct.Address

	raw := dialRaw(t, f.b.IMAPAddr())
	greet := raw.line()
	if !strings.HasPrefix(greet, "* OK [CAPABILITY IMAP4rev1") || !strings.Contains(greet, "STARTTLS") ||
		!strings.Contains(greet, "AUTH=PLAIN") {
		t.Fatalf("greeting %q", greet)
	}
	raw.send(fmt.Sprintf(`a1 LOGIN %s "%s"`, user, f.pw))
	ok := raw.until("a1 ")
	last := ok[len(ok)-1]
	if !strings.HasPrefix(last, "a1 OK [CAPABILITY ") {
		t.Fatalf("login reply %q", ok)
	}
	for _, banned := range []string{"STARTTLS", "AUTH=", "LOGINDISABLED"} {
		if strings.Contains(last, banned) {
			t.Errorf("post-login capabilities carry %s: %q", banned, last)
		}
	}
	raw.send("a2 CAPABILITY")
	capLines := raw.until("a2 ")
	if !strings.HasPrefix(capLines[0], "* CAPABILITY ") || strings.Contains(capLines[0], "AUTH=") {
		t.Errorf("relayed CAPABILITY %q", capLines)
	}
	raw.send("a3 LOGOUT")
	raw.until("a3 ")

	c := loginIMAP(t, f.b.IMAPAddr(), strings.ToUpper(user), f.pw) // user names are case-insensitive
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range boxes {
		names = append(names, b.Mailbox)
	}
	if !strings.Contains(strings.Join(names, "|"), "Patients/Résultats") {
		t.Errorf("folders through the bridge %v, want the demo's Patients/Résultats", names)
	}
	msg := "From: <" + user + ">\r\nSubject: relayed append\r\n\r\nbody with a line\r\n* CAPABILITY STARTTLS\r\n"
	ap := c.Append("Archives", int64(len(msg)), nil)
	ap.Write([]byte(msg))
	ap.Close()
	if _, err := ap.Wait(); err != nil {
		t.Fatalf("APPEND through the bridge: %v", err)
	}
	sel, err := c.Select("Archives", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(sel.NumMessages), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v %d", err, len(msgs))
	}
	var body []byte
	for _, b := range msgs[0].BodySection {
		body = b.Bytes
	}
	if string(body) != msg {
		t.Errorf("fetched %q, want the appended %q (a literal's content is never rewritten)", body, msg)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("logout: %v", err)
	}
	if n := f.card.prompts.Load(); n != 1 {
		t.Errorf("PIN prompts %d, want 1 (one card generation)", n)
	}
	if f.events.count(bridge.ClientLoggedIn, "") != 2 {
		t.Errorf("events %+v: want two logged-in clients", f.events.all())
	}
	st := f.b.Status()
	if st.Card != bridge.CardReady || st.CertSHA256 == "" {
		t.Errorf("status %+v: want card ready and the certificate pinned", st)
	}
}

// TestWrongPasswordDelayed: wrong passwords are refused with AUTHENTICATIONFAILED after the failure delay, which
// doubles; the right one is still accepted afterwards; nothing was tried upstream.
func TestWrongPasswordDelayed(t *testing.T) {
	f := newUnitFixture(t, unitOptions{})
	raw := dialRaw(t, f.b.IMAPAddr())
	raw.line()
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		start := time.Now()
		raw.send(fmt.Sprintf(`a%d LOGIN %s wrong-password`, i, f.acct.Address))
		reply := raw.line()
		if took := time.Since(start); took < want {
			t.Errorf("refusal %d after %v, want at least %v", i, took, want)
		}
		if !strings.HasPrefix(reply, fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED] Wrong user name or bridge password", i)) {
			t.Errorf("refusal %q", reply)
		}
	}
	// AUTHENTICATE PLAIN with the wrong user and the right password: refused too.
	raw.send("b1 AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00bruno@x\x00"+f.pw)))
	if l := raw.line(); !strings.HasPrefix(l, "b1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong user: %q", l)
	}
	// AUTHENTICATE PLAIN without an initial response, right credentials.
	raw.send("b2 AUTHENTICATE PLAIN")
	if l := raw.line(); l != "+ " {
		t.Fatalf("continuation %q", l)
	}
	raw.send(base64.StdEncoding.EncodeToString([]byte("\x00" + f.acct.Address + "\x00" + f.pw)))
	if l := raw.until("b2 "); !strings.HasPrefix(l[len(l)-1], "b2 OK") {
		t.Errorf("AUTHENTICATE PLAIN: %q", l)
	}
	if n := f.events.count(bridge.LoginRefused, "auth_failed"); n != 3 {
		t.Errorf("%d login_refused auth_failed events, want 3", n)
	}
	if n := f.card.signs.Load(); n != 1 {
		t.Errorf("%d card signatures, want 1 (refused logins never reach the card)", n)
	}
}

// TestCardRemovalAndSwap: removing the card closes the relayed IMAP session (with a BYE) and the SMTP session at
// once; while it is out, logins get NO [UNAVAILABLE] and 454 in words; once back, one PIN prompt serves many
// connections; another person's card never serves the account (the certificate the bridge served first is
// pinned).
func TestCardRemovalAndSwap(t *testing.T) {
	f := newUnitFixture(t, unitOptions{})
	raw := dialRaw(t, f.b.IMAPAddr())
	raw.line()
	raw.send(fmt.Sprintf(`a1 LOGIN %s %s`, f.acct.Address, f.pw))
	raw.until("a1 OK")
	raw.send("a2 SELECT INBOX")
	raw.until("a2 OK")
	sc := dialSMTP(t, f.b.SMTPAddr())
	if err := sc.Auth(sasl.NewPlainClient("", f.acct.Address, f.pw)); err != nil {
		t.Fatalf("SMTP AUTH: %v", err)
	}

	f.remove()
	start := time.Now()
	lines := []string{}
	_ = raw.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		l, err := raw.r.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE [UNAVAILABLE] CardMail: The card was removed") {
		t.Errorf("after removal the IMAP client read %q, want one BYE [UNAVAILABLE] with the reason", lines)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("IMAP session closed %v after the removal", took)
	}
	if err := sc.Noop(); err == nil {
		t.Error("the SMTP session survived the card removal")
	}

	// While the card is out: temporary refusals in words.
	r2 := dialRaw(t, f.b.IMAPAddr())
	r2.line()
	r2.send(fmt.Sprintf(`a1 LOGIN %s %s`, f.acct.Address, f.pw))
	if l := r2.line(); !strings.HasPrefix(l, "a1 NO [UNAVAILABLE] CardMail: No card is inserted") {
		t.Errorf("login without card: %q", l)
	}
	s2 := dialSMTP(t, f.b.SMTPAddr())
	err := s2.Auth(sasl.NewPlainClient("", f.acct.Address, f.pw))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 454 || !strings.Contains(se.Message, "No card is inserted") {
		t.Errorf("SMTP AUTH without card: %v, want 454 with the reason", err)
	}
	if f.b.Status().Card != bridge.CardAbsent {
		t.Errorf("card state %q, want absent", f.b.Status().Card)
	}

	// Back: many connections, one PIN prompt.
	f.insert(f.ids.alice)
	before := f.card.prompts.Load()
	if err := parallel(8, func(int) error {
		return localClient(f.b.IMAPAddr(), "", f.acct.Address, f.pw, false)
	}); err != nil {
		t.Errorf("after reinsertion: %v", err)
	}
	if n := f.card.prompts.Load() - before; n != 1 {
		t.Errorf("%d PIN prompts for 8 connections of one card generation, want 1", n)
	}

	// Bruno's card: refused, never used to log in.
	f.remove()
	f.insert(f.ids.bruno)
	signs := f.card.signs.Load()
	r3 := dialRaw(t, f.b.IMAPAddr())
	r3.line()
	r3.send(fmt.Sprintf(`a1 LOGIN %s %s`, f.acct.Address, f.pw))
	if l := r3.line(); !strings.HasPrefix(l, "a1 NO [UNAVAILABLE] CardMail:") {
		t.Errorf("login with another person's card: %q", l)
	}
	if n := f.card.signs.Load() - signs; n != 0 {
		t.Errorf("another person's card signed %d times for this account", n)
	}
	var codes []string
	for _, ev := range f.events.all() {
		if ev.Kind == bridge.LoginRefused {
			codes = append(codes, string(ev.Code))
		}
	}
	if got := codes[len(codes)-1]; got != "card_wrong_identity" {
		t.Errorf("last refusal code %q, want card_wrong_identity", got)
	}
	if f.events.count(bridge.CardRemoved, "") != 2 || f.events.count(bridge.CardInserted, "") != 2 {
		t.Errorf("card events: %+v", f.events.all())
	}
}

func dialSMTP(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.CommandTimeout = 10 * time.Second
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSMTPRelay: local STARTTLS with the loopback certificate, AUTH LOGIN (Outlook's) and PLAIN; MAIL, RCPT and DATA
// get the upstream's own answers (a refused sender or recipient passes through); an accepted message is found by
// IMAP upstream; MAIL without AUTH is refused.
func TestSMTPRelay(t *testing.T) {
	f := newUnitFixture(t, unitOptions{pinCert: true})
	_, certFile, err := f.store.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certFile)
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("loopback certificate file holds no certificate")
	}
	c, err := smtp.DialStartTLS(f.b.SMTPAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("local STARTTLS with the loopback certificate: %v", err)
	}
	defer c.Close()
	var se *smtp.SMTPError
	if err := c.Mail(f.acct.Address, nil); !errors.As(err, &se) || se.Code != 530 {
		t.Errorf("MAIL before AUTH: %v, want 530", err)
	}
	if err := c.Auth(&loginClient{user: f.acct.Address, pass: f.pw}); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := c.Mail("someone.else@cardmail.test", nil); !errors.As(err, &se) || se.Code != 553 ||
		!strings.Contains(se.Message, "not the card holder") {
		t.Errorf("upstream's refusal of the sender not passed on: %v", err)
	}
	c.Reset()
	if err := c.Mail(f.acct.Address, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@cardmail.test", nil); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("upstream's refusal of a recipient not passed on: %v", err)
	}
	if err := c.Rcpt(bench.DefaultEmail(bench.BrunoName), nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: <" + f.acct.Address + ">\r\nSubject: through the bridge\r\nMessage-ID: <bridge-unit@x>\r\n\r\n.a line with a dot\r\n"
	w.Write([]byte(msg))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if !strings.Contains(resp.StatusText, "OK") {
		t.Errorf("DATA reply %q", resp.StatusText)
	}
	c.Quit()

	// The message is upstream (Bruno's mailbox on the demo server), dot-stuffing undone once.
	f.insert(f.ids.bruno) // same reader: a card change; then read Bruno's mailbox directly with his card
	d := &mail.Dialer{Sessions: f.m, Timeout: 5 * time.Second}
	ba := f.acct
	ba.Address, ba.Cert = bench.DefaultEmail(bench.BrunoName), session.Selection{}
	ic, err := d.IMAP(t.Context(), ba)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	hs, total, err := ic.Headers(t.Context(), "INBOX", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range hs {
		found = found || h.Subject == "through the bridge"
	}
	if !found {
		t.Errorf("the relayed message is not in the recipient's INBOX (%d messages)", total)
	}
}

// loginClient is SASL LOGIN as Outlook speaks it.
type loginClient struct{ user, pass string }

func (l *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }
func (l *loginClient) Next(ch []byte) ([]byte, error) {
	if strings.HasPrefix(string(ch), "User") {
		return []byte(l.user), nil
	}
	return []byte(l.pass), nil
}

// TestBadClients: garbage, a client that leaves mid-command or mid-literal, a TLS client on the plaintext port, an
// SMTP client on the IMAP port and an IMAP client on the SMTP port each get a clear answer and are let go; nothing
// hangs and nothing leaks.
func TestBadClients(t *testing.T) {
	f := newUnitFixture(t, unitOptions{})
	done := leakCheck(t)

	g := dialRaw(t, f.b.IMAPAddr())
	g.line()
	for i := range 5 {
		g.send(fmt.Sprintf("\x01\x02garbage %d \"unterminated", i))
	}
	got := g.until("* BYE")
	if len(got) != 6 || !strings.HasPrefix(got[0], "* BAD ") || got[5] != "* BYE Too many invalid commands" {
		t.Errorf("garbage answers %q", got)
	}
	if !g.closed(2 * time.Second) {
		t.Error("connection kept open after too many invalid commands")
	}

	g2 := dialRaw(t, f.b.IMAPAddr())
	g2.line()
	g2.send("a1 SELECT INBOX")
	if l := g2.line(); !strings.HasPrefix(l, "a1 BAD Log in first") {
		t.Errorf("command before login: %q", l)
	}
	g2.send("a2 LOGIN {5}")
	if l := g2.line(); !strings.HasPrefix(l, "+ ") {
		t.Errorf("literal continuation %q", l)
	}
	g2.conn.Write([]byte("ab")) // and leave mid-literal
	g2.conn.Close()

	tl := dialRaw(t, f.b.IMAPAddr())
	tl.line()
	tc := tls.Client(tl.conn, &tls.Config{InsecureSkipVerify: true}) // a client set for implicit TLS
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Error("a TLS handshake succeeded on the plaintext IMAP port")
	}

	sm := dialRaw(t, f.b.IMAPAddr())
	sm.line()
	sm.send("EHLO client.test")
	if l := sm.line(); !strings.HasPrefix(l, "* BYE This is the IMAP port of CardMail Bridge") ||
		!strings.Contains(l, f.b.SMTPAddr()) {
		t.Errorf("SMTP client on the IMAP port: %q", l)
	}

	im := dialRaw(t, f.b.SMTPAddr())
	if l := im.line(); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("SMTP greeting %q", l)
	}
	im.send("a1 CAPABILITY")
	if l := im.line(); !strings.HasPrefix(l, "5") {
		t.Errorf("IMAP client on the SMTP port: %q", l)
	}
	ts := dialRaw(t, f.b.SMTPAddr())
	ts.line()
	tc2 := tls.Client(ts.conn, &tls.Config{InsecureSkipVerify: true})
	_ = tc2.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc2.Handshake(); err == nil {
		t.Error("a TLS handshake succeeded on the plaintext SMTP port")
	}

	// SMTP client that leaves in the middle of DATA: nothing reaches the server.
	sc := dialSMTP(t, f.b.SMTPAddr())
	if err := sc.Auth(sasl.NewPlainClient("", f.acct.Address, f.pw)); err != nil {
		t.Fatal(err)
	}
	sc.Mail(f.acct.Address, nil)
	sc.Rcpt(f.acct.Address, nil)
	w, _ := sc.Data()
	w.Write([]byte("Subject: cut short\r\n\r\nhalf a messa"))
	sc.Close()

	for _, c := range []*rawClient{g, g2, tl, sm, im, ts} {
		c.conn.Close()
	}
	waitFor(t, 5*time.Second, "every local connection closed", func() bool { return f.b.Status().Clients == 0 })
	c := loginIMAP(t, f.b.IMAPAddr(), f.acct.Address, f.pw)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	hs, err := c.Fetch(imap.SeqSetNum(1, 2, 3, 4, 5, 6), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Envelope != nil && h.Envelope.Subject == "cut short" {
			t.Error("a message cut short by the client was delivered")
		}
	}
	c.Logout().Wait()
	c.Close()
	var faults []string
	for _, ev := range f.events.all() {
		if ev.Kind == bridge.ClientDisconnected && ev.Code != "" {
			faults = append(faults, string(ev.Code))
		}
	}
	for _, want := range []string{"protocol_error", "wrong_security_mode"} {
		if !strings.Contains(strings.Join(faults, " "), want) {
			t.Errorf("disconnect codes %v: missing %s", faults, want)
		}
	}
	waitFor(t, 5*time.Second, "every local connection closed", func() bool { return f.b.Status().Clients == 0 })
	done()
}

// TestListenLoopbackOnly: non-loopback addresses are refused before anything listens; a taken port is a clear
// error.
func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:1143", ":1143", "[::]:1143", "192.0.2.1:1143", "example.org:1143", "127.0.0.1"} {
		if _, err := bridge.CheckLoopback(addr); err == nil {
			t.Errorf("CheckLoopback(%q) accepted", addr)
		}
	}
	if _, err := bridge.CheckLoopback("0.0.0.0:1143"); !errors.Is(err, bridge.ErrNotLoopback) {
		t.Errorf("0.0.0.0: %v, want ErrNotLoopback", err)
	}
	for _, addr := range []string{"127.0.0.1:1143", "[::1]:1025", "localhost:0", "127.0.0.2:0"} {
		if _, err := bridge.CheckLoopback(addr); err != nil {
			t.Errorf("CheckLoopback(%q): %v", addr, err)
		}
	}
	f := newUnitFixture(t, unitOptions{})
	_, err := bridge.Start(bridge.Config{Account: f.acct, Dialer: &mail.Dialer{Sessions: f.m}, Password: f.pw,
		IMAPAddr: f.b.IMAPAddr(), SMTPAddr: "127.0.0.1:0"})
	var le *bridge.ListenError
	if !errors.As(err, &le) || !errors.Is(err, bridge.ErrPortInUse) || le.Protocol != "imap" {
		t.Errorf("second bridge on a taken port: %v, want *ListenError wrapping ErrPortInUse", err)
	}
	_, err = bridge.Start(bridge.Config{Account: f.acct, Dialer: &mail.Dialer{Sessions: f.m}, Password: f.pw,
		IMAPAddr: "0.0.0.0:0"})
	if !errors.Is(err, bridge.ErrNotLoopback) {
		t.Errorf("0.0.0.0: %v", err)
	}
	// localhost binds both loopback families on one port.
	b, err := bridge.Start(bridge.Config{Account: f.acct, Dialer: &mail.Dialer{Sessions: f.m}, Password: f.pw,
		IMAPAddr: "localhost:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, port, _ := net.SplitHostPort(b.IMAPAddr())
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), time.Second)
		if err != nil {
			if host == "::1" {
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			}
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestConcurrentLocalConnections: 50 clients at once through one card generation: all served, one PIN prompt,
// and no goroutine or file descriptor left afterwards.
func TestConcurrentLocalConnections(t *testing.T) {
	f := newUnitFixture(t, unitOptions{})
	done := leakCheck(t)
	const n = 50
	if err := parallel(n, func(i int) error {
		return localClient(f.b.IMAPAddr(), f.b.SMTPAddr(), f.acct.Address, f.pw, i%2 == 0)
	}); err != nil {
		t.Error(err)
	}
	if p := f.card.prompts.Load(); p != 1 {
		t.Errorf("%d PIN prompts, want 1", p)
	}
	if got := f.events.count(bridge.ClientLoggedIn, ""); got != n {
		t.Errorf("%d clients logged in, want %d", got, n)
	}
	waitFor(t, 5*time.Second, "all clients gone", func() bool { return f.b.Status().Clients == 0 })
	done()
}
