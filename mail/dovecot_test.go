package mail_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/token"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// fixture is the bench (virtual card in pcscd, OpenSC) with a session manager fed by a live reader watcher, and a
// real Dovecot with a Postfix relay, as in session/bench_test.go.
type fixture struct {
	b       *bench.Bench
	m       *session.Manager
	dv      *mailsrv.Dovecot
	policy  *tlspolicy.Policy
	d       *mail.Dialer
	prompts atomic.Int32
	events  chan session.Event
}

func newFixture(t testing.TB, opt mailsrv.DovecotOptions) *fixture {
	t.Helper()
	b := bench.Start(t)
	f := &fixture{b: b, events: make(chan session.Event, 256)}
	f.m = session.New(session.Config{
		Module: b.OpenSC,
		PINPrompt: func(ctx context.Context, req session.PINRequest) ([]byte, error) {
			f.prompts.Add(1)
			return []byte(bench.DefaultPIN), nil
		},
	})
	f.m.Subscribe(func(ev session.Event) {
		select {
		case f.events <- ev:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.m.Run(ctx, reader.Watch(ctx)) }()
	t.Cleanup(func() { cancel(); <-done; f.m.Close() })
	f.dv = mailsrv.StartDovecot(t, b.PKI, opt)
	p, err := tlspolicy.New(tlspolicy.Default, []string{f.dv.CAFile}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.policy = p
	f.d = &mail.Dialer{Sessions: f.m, Timeout: 10 * time.Second}
	f.insert(t, 0, 0)
	return f
}

func (f *fixture) drain() {
	for {
		select {
		case <-f.events:
		default:
			return
		}
	}
}

func (f *fixture) waitEvent(t testing.TB, kind session.EventKind, rd string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-f.events:
			if ev.Kind == kind && (rd == "" || ev.Reader == rd) {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event for %q within 10s", kind, rd)
		}
	}
}

func (f *fixture) insert(t testing.TB, card, slot int) {
	t.Helper()
	f.drain()
	f.b.InsertWait(t, card, slot)
	f.waitEvent(t, session.CardInserted, f.b.Readers[slot])
}

func (f *fixture) remove(t testing.TB, slot int) {
	t.Helper()
	f.drain()
	f.b.RemoveWait(t, slot)
	f.waitEvent(t, session.CardRemoved, f.b.Readers[slot])
}

func hostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil {
		t.Fatal(err)
	}
	return h, port
}

// account is Alice's account on the fixture's Dovecot.
func (f *fixture) account(t testing.TB, sec profile.Security, auth profile.Login) mail.Account {
	imapAddr, smtpAddr := f.dv.IMAPS, f.dv.SubmissionS
	if sec == profile.StartTLS {
		imapAddr, smtpAddr = f.dv.IMAP, f.dv.Submission
	}
	ih, ip := hostPort(t, imapAddr)
	sh, sp := hostPort(t, smtpAddr)
	return mail.Account{
		Address: bench.DefaultEmail(bench.AliceName),
		IMAP:    profile.Server{Host: ih, Port: ip, Security: sec},
		SMTP:    profile.Server{Host: sh, Port: sp, Security: sec},
		Auth:    auth,
		Policy:  f.policy,
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func folderNamed(fs []mail.Folder, name string) *mail.Folder {
	for i := range fs {
		if fs[i].Name == name {
			return &fs[i]
		}
	}
	return nil
}

// The whole IMAP/SMTP surface against one real Dovecot with the card.
func TestDovecot(t *testing.T) {
	const messages = 7
	f := newFixture(t, mailsrv.DovecotOptions{Folders: 5, Messages: messages})

	t.Run("login", func(t *testing.T) {
		cases := []struct {
			sec      profile.Security
			auth     profile.Login
			wantMech string
		}{
			{profile.Implicit, profile.LoginAuto, "EXTERNAL"},
			{profile.Implicit, profile.LoginExternal, "EXTERNAL"},
			{profile.Implicit, profile.LoginLogin, "LOGIN"},
			{profile.Implicit, profile.LoginPlain, "PLAIN"},
			{profile.StartTLS, profile.LoginAuto, "EXTERNAL"},
			{profile.StartTLS, profile.LoginExternal, "EXTERNAL"},
			{profile.StartTLS, profile.LoginLogin, "LOGIN"},
		}
		for _, tc := range cases {
			t.Run(string(tc.sec)+"/"+string(tc.auth), func(t *testing.T) {
				rec := &session.Record{}
				facts := &tlspolicy.Facts{}
				var steps []string
				var mu sync.Mutex
				ctx := mail.WithTrace(ctxT(t), &mail.Trace{Record: rec, Facts: facts, Step: func(s string, err error, _ time.Duration) {
					mu.Lock()
					defer mu.Unlock()
					steps = append(steps, fmt.Sprintf("%s:%v", s, err == nil))
				}})
				c, err := f.d.IMAP(ctx, f.account(t, tc.sec, tc.auth))
				if err != nil {
					t.Fatalf("IMAP: %v\nDovecot log:\n%s", err, tail(f.dv.Log(), 30))
				}
				defer c.Close()
				if c.Mechanism() != tc.wantMech {
					t.Errorf("mechanism %q, want %q", c.Mechanism(), tc.wantMech)
				}
				if st := c.TLS(); st.Version < tls.VersionTLS12 || len(st.PeerCertificates) == 0 {
					t.Errorf("TLS state not captured: version %x, %d peer certs", st.Version, len(st.PeerCertificates))
				}
				if fa := rec.Facts(); !fa.CertRequested || fa.CertSentSHA256 == "" {
					t.Errorf("card certificate not sent: %+v", fa)
				}
				if snap := facts.Snapshot(); snap.Version == 0 {
					t.Errorf("policy facts empty: %+v", snap)
				}
				fs, err := c.Folders(ctx)
				if err != nil || folderNamed(fs, "INBOX") == nil {
					t.Fatalf("folders after login: %v, %v", fs, err)
				}
				t.Logf("steps %v", steps)
			})
		}
	})

	t.Run("folders", func(t *testing.T) {
		ctx := ctxT(t)
		c, err := f.d.IMAP(ctx, f.account(t, profile.Implicit, profile.LoginAuto))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const utf = "Résumé & co"
		if err := mail.CreateFolder(c, utf); err != nil {
			t.Fatalf("CREATE %q: %v", utf, err)
		}
		if !strings.Contains(" "+strings.Join(c.Caps(), " ")+" ", " LIST-STATUS ") {
			t.Fatalf("Dovecot does not offer LIST-STATUS: %v", c.Caps())
		}
		listStatus, err := c.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.d.DisableListStatus = true
		pipelined, err := c.Folders(ctx)
		f.d.DisableListStatus = false
		if err != nil {
			t.Fatal(err)
		}
		for name, fs := range map[string][]mail.Folder{"LIST-STATUS": listStatus, "LIST+STATUS": pipelined} {
			if len(fs) < 7 || fs[0].Name != "INBOX" {
				t.Errorf("%s: %d folders, first %q: %+v", name, len(fs), fs[0].Name, fs)
			}
			in := folderNamed(fs, "INBOX")
			if in == nil || in.Messages != messages || in.Unseen == 0 || in.Unseen > messages {
				t.Errorf("%s: INBOX %+v, want %d messages, some unseen", name, in, messages)
			}
			r := folderNamed(fs, utf)
			if r == nil {
				t.Errorf("%s: no folder %q (modified UTF-7 not decoded?): %+v", name, utf, fs)
			} else if r.Delim == 0 || r.NoSelect {
				t.Errorf("%s: %+v", name, *r)
			}
		}
		// Attributes may differ (LIST without RETURN options adds \\HasNoChildren); names and counts may not.
		if counts(listStatus) != counts(pipelined) {
			t.Errorf("LIST-STATUS and pipelined STATUS disagree:\n%v\n%v", listStatus, pipelined)
		}
		// The folder name reaches Dovecot encoded: its maildir uses modified UTF-7.
		if err := mail.DeleteFolder(c, utf); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("headers", func(t *testing.T) {
		ctx := ctxT(t)
		c, err := f.d.IMAP(ctx, f.account(t, profile.StartTLS, profile.LoginAuto))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		seen := map[uint32]bool{}
		var last uint32 = 1 << 31
		for page := 0; ; page++ {
			hs, total, err := c.Headers(ctx, "INBOX", page, 3)
			if err != nil {
				t.Fatal(err)
			}
			if total != messages {
				t.Fatalf("total %d, want %d", total, messages)
			}
			want := 3
			if rest := messages - page*3; rest < 3 {
				want = max(rest, 0)
			}
			if len(hs) != want {
				t.Fatalf("page %d: %d headers, want %d", page, len(hs), want)
			}
			if len(hs) == 0 {
				break
			}
			for _, h := range hs {
				if h.UID >= last {
					t.Errorf("page %d: UID %d after %d: not newest first", page, h.UID, last)
				}
				last = h.UID
				if seen[h.UID] || h.Size == 0 || h.Date.IsZero() || h.Subject == "" || h.From == "" {
					t.Errorf("header %+v", h)
				}
				seen[h.UID] = true
			}
		}
		if len(seen) != messages {
			t.Errorf("%d distinct headers over all pages, want %d", len(seen), messages)
		}
		if _, _, err := c.Headers(ctx, "NoSuchFolder", 0, 10); !errors.As(err, new(*mail.ProtocolError)) {
			t.Errorf("missing folder: %v, want *mail.ProtocolError", err)
		}
	})

	t.Run("redacted log", func(t *testing.T) {
		const pw = "pw-Secret-42"
		var mu sync.Mutex
		var lines []string
		ctx := mail.WithTrace(ctxT(t), &mail.Trace{Log: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }})
		for _, auth := range []profile.Login{profile.LoginLogin, profile.LoginPlain} {
			a := f.account(t, profile.Implicit, auth)
			a.Password = pw
			c, err := f.d.IMAP(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			// SMTP with the same password and the card (Dovecot's submission takes the user name from the card
			// certificate for LOGIN/PLAIN, which the bench's passdb does not map: use auto = EXTERNAL there).
			a.Auth = profile.LoginAuto
			if _, err := f.d.SendTest(ctx, a, a.Address); err != nil {
				t.Fatalf("%s: %v\nDovecot log:\n%s", auth, err, tail(f.dv.Log(), 30))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		all := strings.Join(lines, "\n")
		if len(lines) < 10 || !strings.Contains(all, "LOGIN "+mail.Redacted) {
			t.Errorf("log too short or LOGIN not redacted:\n%s", all)
		}
		for _, leak := range []string{pw, "cHctU2VjcmV0LTQy"} { // and base64 fragments of a PLAIN payload
			if strings.Contains(all, leak) {
				t.Fatalf("password leaked into the protocol log:\n%s", all)
			}
		}
	})

	t.Run("send test", func(t *testing.T) {
		for _, sec := range []profile.Security{profile.Implicit, profile.StartTLS} {
			ctx := ctxT(t)
			a := f.account(t, sec, profile.LoginAuto)
			sent, err := f.d.SendTest(ctx, a, a.Address)
			if err != nil {
				t.Fatalf("%s: %v\nDovecot log:\n%s\nPostfix log:\n%s", sec, err, tail(f.dv.Log(), 5), tail(f.dv.PostfixLog(), 30))
			}
			if sent.Mechanism != "EXTERNAL" {
				t.Errorf("%s: %+v", sec, sent)
			}
			waitMessage(t, f, a, sent.MessageID)
		}
	})

	t.Run("failed test message", func(t *testing.T) {
		// A failed test message is a failed test: the error says so, nothing is kept, nothing is sent later.
		ctx := ctxT(t)
		good := f.account(t, profile.Implicit, profile.LoginAuto)
		bad := good
		ln, err := net.Listen("tcp", "127.0.0.1:0") // a port that accepts and hangs up: SMTP fails at once
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		defer ln.Close()
		bad.SMTP.Host, bad.SMTP.Port = hostPort(t, ln.Addr().String())
		failed, err := f.d.SendTest(ctx, bad, good.Address)
		if err == nil || failed == nil || failed.MessageID == "" || errors.Is(err, mail.ErrDeliveryUnconfirmed) {
			t.Fatalf("send to a dead server: %+v, %v", failed, err)
		}
		// The next test message goes through, alone: the failed one is not resent with it or after it.
		sent, err := f.d.SendTest(ctx, good, good.Address)
		if err != nil {
			t.Fatal(err)
		}
		waitMessage(t, f, good, sent.MessageID)
		c, err := f.d.IMAP(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hs, _, err := c.Headers(ctx, "INBOX", 0, 200)
		if err != nil {
			t.Fatal(err)
		}
		copies := 0
		for _, h := range hs {
			if h.Subject != mail.TestSubject {
				continue
			}
			id, err := mail.MessageIDOf(c, h.UID)
			if err != nil {
				t.Fatal(err)
			}
			if id == failed.MessageID {
				t.Fatalf("the failed test message %s was delivered", failed.MessageID)
			}
			if id == sent.MessageID {
				copies++
			}
		}
		if copies != 1 {
			t.Fatalf("%d copies of %s in INBOX", copies, sent.MessageID)
		}
	})

	t.Run("unconfirmed test message", func(t *testing.T) {
		// The server takes the whole message, final "." included, and hangs up before answering it: the error says
		// the message may still arrive (so the person looks before sending another) rather than "not sent".
		ctx := ctxT(t)
		a := f.account(t, profile.Implicit, profile.LoginAuto)
		got := make(chan string, 1)
		addr := dropAfterData(t, f.b.PKI, got)
		a.SMTP.Host, a.SMTP.Port = hostPort(t, addr)
		sent, err := f.d.SendTest(ctx, a, a.Address)
		if !errors.Is(err, mail.ErrDeliveryUnconfirmed) || sent == nil {
			t.Fatalf("send: %+v, %v; want ErrDeliveryUnconfirmed", sent, err)
		}
		select {
		case data := <-got:
			if !strings.Contains(data, sent.MessageID) {
				t.Fatalf("the server received another message:\n%s", data)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the server never received the message")
		}
	})

	t.Run("message", func(t *testing.T) { testMessage(t, f) })

	// Last: pulls the card.
	t.Run("card change", func(t *testing.T) {
		ctx := ctxT(t)
		a := f.account(t, profile.Implicit, profile.LoginAuto)
		pool := mail.NewPool(f.d, 0)
		defer pool.Close()
		if _, err := pool.Folders(ctx, a); err != nil {
			t.Fatal(err)
		}
		c, err := pool.Conn(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Folders(ctx, a); err != nil {
			t.Fatal(err)
		}
		if st := pool.Stats(); st.Dials != 1 {
			t.Errorf("pool stats %+v: want one dial", st)
		}
		prompts := f.prompts.Load()
		f.remove(t, 0)
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the open IMAP connection was not closed after the card was removed")
		}
		if c.Alive() {
			t.Error("connection of the ended generation still alive")
		}
		if _, err := c.Folders(ctx); err == nil {
			t.Error("the closed connection still answered")
		}
		_, err = pool.Folders(ctx, a)
		if !errors.Is(err, session.ErrCardAbsent) {
			t.Fatalf("pool with the card out: %v, want card_absent (session.ErrCardAbsent)", err)
		}
		f.insert(t, 0, 0)
		fs, err := pool.Folders(ctx, a)
		if err != nil || folderNamed(fs, "INBOX") == nil {
			t.Fatalf("after reinsertion: %v %v", fs, err)
		}
		c2, err := pool.Conn(ctx, a)
		if err != nil || c2 == c || !c2.Alive() {
			t.Fatalf("pool handed out %p (old %p), alive %v, %v", c2, c, c2 != nil && c2.Alive(), err)
		}
		if got := f.prompts.Load() - prompts; got != 1 {
			t.Errorf("PIN prompts after reinsertion = %d, want 1", got)
		}
	})
}

// waitMessage polls a's INBOX until a message with Message-ID id (subject mail.TestSubject) arrives (delivery goes
// through Postfix and LMTP), failing after 30 s.
func waitMessage(t *testing.T, f *fixture, a mail.Account, id string) {
	t.Helper()
	ctx := ctxT(t)
	c, err := f.d.IMAP(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hs, _, err := c.Headers(ctx, "INBOX", 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.Subject == mail.TestSubject {
				if got, err := mail.MessageIDOf(c, h.UID); err == nil && got == id {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s not in INBOX after 30 s; Dovecot log:\n%s", id, f.dv.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func counts(fs []mail.Folder) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%q %d/%d %v %c\n", f.Name, f.Messages, f.Unseen, f.NoSelect, f.Delim)
	}
	return b.String()
}

// A Dovecot with TLS tickets and one long-lived login process fails every resumed handshake. CardMail retries such
// a handshake once without the cached session, so every round works: 20 rounds in one process (IMAP implicit and
// STARTTLS, and SMTP submission), each a fresh connection like a mail client that reconnects.
func TestDovecotThatCannotResume(t *testing.T) {
	f := newFixture(t, mailsrv.DovecotOptions{LongLivedLogin: true, Messages: 1})
	const rounds = 20
	var retries atomic.Int32
	log := func(line string) {
		if strings.Contains(line, "refused to resume") {
			retries.Add(1)
		}
	}
	ok := 0
	for i := 0; i < rounds; i++ {
		sec := profile.Implicit
		if i%2 == 1 {
			sec = profile.StartTLS
		}
		a := f.account(t, sec, profile.LoginAuto)
		ctx := mail.WithTrace(ctxT(t), &mail.Trace{Log: log})
		c, err := f.d.IMAP(ctx, a)
		if err != nil {
			t.Errorf("round %d (%s): %v", i, sec, err)
			continue
		}
		fs, err := c.Folders(ctx)
		c.Close()
		if err != nil || folderNamed(fs, "INBOX") == nil {
			t.Errorf("round %d (%s): folders %v, %v", i, sec, len(fs), err)
			continue
		}
		ok++
	}
	for i := 0; i < 4; i++ {
		sec := []profile.Security{profile.Implicit, profile.StartTLS}[i%2]
		ctx := mail.WithTrace(ctxT(t), &mail.Trace{Log: log})
		if _, err := f.d.SendTest(ctx, f.account(t, sec, profile.LoginAuto), bench.DefaultEmail(bench.AliceName)); err != nil {
			t.Errorf("send %d (%s): %v", i, sec, err)
		} else {
			ok++
		}
	}
	t.Logf("%d/%d rounds ok against a Dovecot that cannot resume; %d handshakes retried without the cached session", ok, rounds+4, retries.Load())
	// The floor of what was checked: the server really refused resumptions (else this test proves nothing).
	if retries.Load() == 0 {
		t.Fatalf("no resumption was refused: the server did not reproduce the quirk\n%s", tail(f.dv.Log(), 20))
	}
	if !strings.Contains(f.dv.Log(), "session id context uninitialized") {
		t.Errorf("Dovecot's log does not show the resumption failure")
	}
}

// dropAfterData serves SMTP submission over implicit TLS on 127.0.0.1 with a certificate of pki: it asks for the
// client certificate, accepts AUTH EXTERNAL, MAIL, RCPT and DATA, reads the message up to its final "." and hangs
// up without answering it. The message received goes to got.
func dropAfterData(t *testing.T, pki *bench.PKI, got chan<- string) string {
	t.Helper()
	cert, _, err := mailsrv.IssueServerCert(pki, mailsrv.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		say := func(s string) { _, _ = io.WriteString(c, s+"\r\n") }
		say("220 drop.test ESMTP")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
			case "EHLO":
				say("250-drop.test")
				say("250 AUTH EXTERNAL")
			case "AUTH":
				say("235 2.7.0 ok")
			case "MAIL", "RCPT":
				say("250 2.1.0 ok")
			case "DATA":
				say("354 go ahead")
				var msg strings.Builder
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						got <- msg.String()
						return // hang up instead of "250 queued"
					}
					msg.WriteString(l)
				}
			default:
				say("502 5.5.2 not here")
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}
