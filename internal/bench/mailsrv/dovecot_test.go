package mailsrv

import (
	"context"
	"crypto/tls"
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

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// cardTLS starts a session manager on the bench with Alice's card inserted and returns a function giving a
// card-authenticated tls.Config for Dovecot.
func cardTLS(t *testing.T, b *bench.Bench, d *Dovecot) func() *tls.Config {
	t.Helper()
	m := session.New(session.Config{Module: b.OpenSC, PINPrompt: func(context.Context, session.PINRequest) ([]byte, error) {
		return []byte(bench.DefaultPIN), nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, reader.Watch(ctx)) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	b.InsertWait(t, 0, 0)
	return func() *tls.Config {
		base := keyTLS(t, d.CAFile, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var cfg *tls.Config
		var err error
		for i := 0; i < 50; i++ { // the manager applies the insertion event asynchronously
			if cfg, _, err = m.TLSConfig(ctx, base, session.Selection{}, &session.Record{}); err == nil {
				return cfg
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("card TLS config: %v", err)
		return nil
	}
}

func dialIMAPS(t *testing.T, d *Dovecot, cfg *tls.Config) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(d.IMAPS, &imapclient.Options{TLSConfig: cfg, Dialer: &net.Dialer{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", d.IMAPS, err, d.Log())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func inboxCount(t *testing.T, c *imapclient.Client) uint32 {
	t.Helper()
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return *st.NumMessages
}

// The real chain: virtual card -> pcscd -> OpenSC -> session manager -> Go TLS -> Dovecot; EXTERNAL, LOGIN, and a
// message submitted by SMTP with EXTERNAL that Postfix relays back to Dovecot by LMTP.
func TestDovecotWithCard(t *testing.T) {
	b := bench.Start(t)
	start := time.Now()
	d := StartDovecot(t, b.PKI, DovecotOptions{Messages: 2})
	t.Logf("dovecot + postfix started in %v", time.Since(start).Round(time.Millisecond))
	tlsFor := cardTLS(t, b, d)
	alice := bench.DefaultEmail(bench.AliceName)

	t.Run("imap-external", func(t *testing.T) {
		c := dialIMAPS(t, d, tlsFor())
		if !c.Caps().Has(imap.AuthCap("EXTERNAL")) {
			t.Errorf("capabilities %v lack AUTH=EXTERNAL", c.Caps())
		}
		if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
			t.Fatalf("EXTERNAL: %v\n%s", err, d.Log())
		}
		if n := inboxCount(t, c); n != 2 {
			t.Errorf("INBOX holds %d messages, want 2", n)
		}
		if !strings.Contains(d.Log(), "Login: user=<"+alice+">, method=EXTERNAL") {
			t.Errorf("Dovecot did not log Alice's EXTERNAL login:\n%s", d.Log())
		}
	})
	t.Run("imap-login-address", func(t *testing.T) {
		c := dialIMAPS(t, d, tlsFor())
		if err := c.Login(alice, "").Wait(); err != nil {
			t.Fatalf("LOGIN %s: %v\n%s", alice, err, d.Log())
		}
		if n := inboxCount(t, c); n != 2 {
			t.Errorf("INBOX holds %d messages, want 2", n)
		}
	})
	t.Run("imap-starttls-external", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(d.IMAP, &imapclient.Options{TLSConfig: tlsFor(), Dialer: &net.Dialer{Timeout: 10 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
			t.Fatalf("EXTERNAL after STARTTLS: %v", err)
		}
	})
	t.Run("smtp-external-to-imap", func(t *testing.T) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", d.SubmissionS, tlsFor())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		sc := smtp.NewClient(conn)
		defer sc.Close()
		if err := sc.Hello("client.cardmail.test"); err != nil {
			t.Fatal(err)
		}
		if err := sc.Auth(sasl.NewExternalClient("")); err != nil {
			t.Fatalf("AUTH EXTERNAL: %v\n%s", err, d.Log())
		}
		subject := fmt.Sprintf("bench test %d", time.Now().UnixNano())
		msg := "From: <" + alice + ">\r\nTo: <" + alice + ">\r\nSubject: " + subject + "\r\n\r\nhello\r\n"
		if err := sc.SendMail(alice, []string{alice}, strings.NewReader(msg)); err != nil {
			t.Fatalf("send: %v\n%s\n%s", err, d.Log(), d.PostfixLog())
		}
		_ = sc.Quit()
		c := dialIMAPS(t, d, tlsFor())
		if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for inboxCount(t, c) < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("the message did not reach INBOX in 20 s\n%s\n%s", d.Log(), d.PostfixLog())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
		if err != nil || len(data.AllUIDs()) != 1 {
			t.Fatalf("search for the sent message: %v %v", data, err)
		}
	})
	t.Run("restart-same-ports", func(t *testing.T) {
		addr := d.IMAPS
		d.Restart(t)
		if d.IMAPS != addr {
			t.Fatalf("port changed: %s -> %s", addr, d.IMAPS)
		}
		c := dialIMAPS(t, d, tlsFor())
		if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
			t.Fatal(err)
		}
	})
}

// Without a card: EXTERNAL with Alice's key in memory, Deliver by LMTP, 2000 folders.
func TestDovecotFoldersAndDeliver(t *testing.T) {
	pki, alice := testPKI(t)
	start := time.Now()
	d := StartDovecot(t, pki, DovecotOptions{Folders: 2000, Messages: 1, NoPostfix: true})
	t.Logf("dovecot with 2000 folders x 2 users started in %v", time.Since(start).Round(time.Millisecond))
	d.Deliver(t, bench.DefaultEmail(bench.AliceName), []byte("From: x@y\nSubject: delivered\n\n.leading dot\nbody\n"))
	c := dialIMAPS(t, d, keyTLS(t, d.CAFile, alice))
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	if n := inboxCount(t, c); n != 2 {
		t.Errorf("INBOX holds %d messages, want 2 (1 written + 1 delivered)", n)
	}
	lstart := time.Now()
	boxes, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LIST-STATUS of %d mailboxes in %v", len(boxes), time.Since(lstart).Round(time.Millisecond))
	if len(boxes) != 2001 {
		t.Fatalf("%d mailboxes, want 2001", len(boxes))
	}
	for _, mb := range boxes {
		if mb.Mailbox == FolderName(50) && (mb.Status == nil || *mb.Status.NumMessages != uint32(FolderMessages(50))) {
			t.Errorf("%s status %+v, want %d messages", mb.Mailbox, mb.Status, FolderMessages(50))
		}
	}
}

// Missing binaries fail with a MissingError naming what to install.
func TestMissingBinary(t *testing.T) {
	err := checkBinary("dovecot", "/nonexistent/dovecot")
	var me *MissingError
	if !errorsAs(err, &me) || !strings.Contains(err.Error(), "install-deps.sh") {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkWriteMaildir(b *testing.B) {
	for _, n := range []int{0, 2000} {
		b.Run(fmt.Sprintf("folders=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := writeMaildir(b.TempDir()+"/m", "a@b", 10, n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
