package bridge_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/cardmail/cardmail/bridge"
)

// pyIMAP logs in with imaplib (plain, or STARTTLS when cafile is set) and prints what it saw, or REFUSED and the
// server's answer.
const pyIMAP = `
import imaplib, ssl, sys
host, port, user, pw, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
c = imaplib.IMAP4(host, port, timeout=30)
if cafile:
    c.starttls(ssl.create_default_context(cafile=cafile))
try:
    c.login(user, pw)
except imaplib.IMAP4.error as e:
    print("REFUSED", e)
    sys.exit(0)
typ, boxes = c.list()
print("LIST", typ, b"|".join(boxes).decode())
typ, data = c.select("INBOX", readonly=True)
print("SELECT", typ, data[0].decode())
typ, data = c.search(None, "ALL")
print("SEARCH", len(data[0].split()))
typ, data = c.fetch(b"1", "(RFC822)")
print("FETCH", typ, b"Message-ID:" in data[0][1])
c.logout()
print("DONE")
`

// pySMTP logs in with smtplib (STARTTLS when cafile is set) and sends one message when a recipient is given.
const pySMTP = `
import smtplib, ssl, sys
host, port, user, pw, cafile, rcpt, msgid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
s = smtplib.SMTP(host, port, timeout=30)
s.ehlo()
if cafile:
    s.starttls(context=ssl.create_default_context(cafile=cafile))
    s.ehlo()
try:
    s.login(user, pw)
except smtplib.SMTPAuthenticationError as e:
    print("REFUSED", e.smtp_code, e.smtp_error.decode())
    sys.exit(0)
if rcpt:
    msg = "From: <%s>\r\nTo: <%s>\r\nSubject: smtplib through the bridge\r\nMessage-ID: <%s>\r\n\r\nBonjour, envoy\u00e9 par smtplib.\r\n" % (user, rcpt, msgid)
    refused = s.sendmail(user, [rcpt], msg.encode("utf-8"))
    print("SENT", refused)
s.quit()
print("DONE")
`

// pyWrongPort speaks the other protocol to a port: SMTP to the IMAP port, IMAP to the SMTP port.
const pyWrongPort = `
import imaplib, smtplib, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "smtp":
        s = smtplib.SMTP(host, port, timeout=20)
        s.ehlo()
        s.quit()
    else:
        c = imaplib.IMAP4(host, port, timeout=20)
        c.logout()
    print("NO ERROR")
except Exception as e:
    print("ERROR", type(e).__name__, e)
`

// findOnServer polls the server (directly, with Alice's key file) until a message with msgid is in INBOX.
func (c *chain) findOnServer(t testing.TB, msgid string) {
	t.Helper()
	cl := c.directIMAP(t, nil)
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		res, err := cl.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgid}}}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.AllSeqNums()) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("message <%s> sent through the bridge not found on the server\nPostfix log:\n%s", msgid, tail(c.dv.PostfixLog(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBridgeRealClients: Python's imaplib and smtplib and curl, plain and with local STARTTLS, through the bridge
// to the real Dovecot with the virtual card; a message sent through the bridge is found by IMAP on the server; an
// IDLE-ing client sees a message delivered upstream; a wrong bridge password, clients on the wrong port and 50
// concurrent connections each get a clear answer with nothing leaked; Dovecot restarted under an mbsync sync ends
// the sync cleanly and the next sync completes.
func TestBridgeRealClients(t *testing.T) {
	c := newChain(t, fillMailbox)
	host, iport := splitAddr(t, c.br.IMAPAddr())
	_, sport := splitAddr(t, c.br.SMTPAddr())

	t.Run("imaplib", func(t *testing.T) {
		for _, cafile := range []string{"", c.cert} {
			out, err := python(t, pyIMAP, host, iport, c.user, c.pw, cafile)
			if err != nil || !strings.Contains(out, "DONE") {
				t.Fatalf("imaplib (STARTTLS %v): %v\n%s", cafile != "", err, out)
			}
			for _, want := range []string{"LIST OK", `"R&AOk-sultats labo"`, `"Patients.Dossiers &AOk-t&AOk-"`,
				"SELECT OK 110", "SEARCH 110", "FETCH OK True"} {
				if !strings.Contains(out, want) {
					t.Errorf("imaplib (STARTTLS %v): no %q in\n%s", cafile != "", want, out)
				}
			}
		}
		out, err := python(t, pyIMAP, host, iport, c.user, "not-the-bridge-password", "")
		if err != nil || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "AUTHENTICATIONFAILED") {
			t.Errorf("imaplib with a wrong password: %v\n%s", err, out)
		}
	})

	t.Run("smtplib", func(t *testing.T) {
		id := fmt.Sprintf("smtplib-%d@bench.cardmail.test", time.Now().UnixNano())
		out, err := python(t, pySMTP, host, sport, c.user, c.pw, c.cert, c.user, id)
		if err != nil || !strings.Contains(out, "SENT {}") {
			t.Fatalf("smtplib: %v\n%s", err, out)
		}
		c.findOnServer(t, id)
	})

	t.Run("curl", func(t *testing.T) {
		user := c.user + ":" + c.pw
		out, err := curl(t, "--user", user, "imap://"+c.br.IMAPAddr()+"/")
		if err != nil || !strings.Contains(out, "INBOX") || !strings.Contains(out, "Archives 2025") {
			t.Errorf("curl IMAP LIST: %v\n%s", err, out)
		}
		out, err = curl(t, "--ssl-reqd", "--cacert", c.cert, "--user", user, "imap://"+c.br.IMAPAddr()+"/INBOX;UID=1")
		if err != nil || !strings.Contains(out, "Message-ID: <bridge-0-0@bench.cardmail.test>") {
			t.Errorf("curl IMAP FETCH over local STARTTLS: %v\n%s", err, tail(out, 5))
		}
		id := fmt.Sprintf("curl-%d@bench.cardmail.test", time.Now().UnixNano())
		msg := filepath.Join(t.TempDir(), "msg.eml")
		os.WriteFile(msg, []byte("From: <"+c.user+">\r\nTo: <"+c.user+">\r\nSubject: curl through the bridge\r\nMessage-ID: <"+id+">\r\n\r\nsent by curl\r\n"), 0o600)
		out, err = curl(t, "--ssl-reqd", "--cacert", c.cert, "--user", user, "--mail-from", c.user, "--mail-rcpt", c.user,
			"--upload-file", msg, "smtp://"+c.br.SMTPAddr())
		if err != nil {
			t.Fatalf("curl SMTP: %v\n%s", err, out)
		}
		c.findOnServer(t, id)
	})

	t.Run("idle", func(t *testing.T) {
		var mu sync.Mutex
		var exists uint32
		seen := make(chan struct{}, 16)
		cl, err := imapclient.DialInsecure(c.br.IMAPAddr(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					mu.Lock()
					exists = *d.NumMessages
					mu.Unlock()
					seen <- struct{}{}
				}
			}}})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Login(c.user, c.pw).Wait(); err != nil {
			t.Fatal(err)
		}
		if !cl.Caps().Has(imap.CapIdle) {
			t.Fatalf("IDLE not offered through the bridge: %v", cl.Caps())
		}
		sel, err := cl.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		idle, err := cl.Idle()
		if err != nil {
			t.Fatal(err)
		}
		c.dv.Deliver(t, c.user, []byte("From: <lab@cardmail.test>\r\nSubject: arrives while idling\r\n\r\nnew\r\n"))
		timeout := time.After(40 * time.Second)
		for {
			select {
			case <-seen:
			case <-timeout:
				t.Fatalf("no EXISTS through the bridge within 40 s of the delivery (was %d)", sel.NumMessages)
			}
			mu.Lock()
			n := exists
			mu.Unlock()
			if n > sel.NumMessages {
				break
			}
		}
		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
		cl.Logout().Wait()
	})

	t.Run("wrong port", func(t *testing.T) {
		start := time.Now()
		out, err := python(t, pyWrongPort, "smtp", host, iport)
		if err != nil || !strings.HasPrefix(out, "ERROR") {
			t.Errorf("smtplib on the IMAP port: %v\n%s", err, out)
		}
		out, err = python(t, pyWrongPort, "imap", host, sport)
		if err != nil || !strings.HasPrefix(out, "ERROR") {
			t.Errorf("imaplib on the SMTP port: %v\n%s", err, out)
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("wrong-port clients took %v to be told", took)
		}
	})

	t.Run("50 concurrent", func(t *testing.T) {
		prompts := c.prompts.Load()
		done := leakCheck(t)
		if err := parallel(50, func(i int) error {
			return localClient(c.br.IMAPAddr(), c.br.SMTPAddr(), c.user, c.pw, i%5 == 4)
		}); err != nil {
			t.Error(err)
		}
		waitFor(t, 10*time.Second, "all local clients gone", func() bool { return c.br.Status().Clients == 0 })
		if p := c.prompts.Load(); p != prompts {
			t.Errorf("PIN asked %d more times for 50 connections of one card generation", p-prompts)
		}
		done()
	})

	t.Run("dovecot restart under sync", func(t *testing.T) {
		local := t.TempDir()
		g := newGate(t, c.br.IMAPAddr(), 1<<20)
		cfg := c.mbsyncConfig(t, local, g.addr(), viaBridgeTLS)
		exited, out := heldMbsync(t, g, cfg)
		disconnects := c.events.count(bridge.ClientDisconnected, "")
		c.dv.Restart(t)
		g.open()
		select {
		case err := <-exited:
			t.Logf("mbsync across the restart: %v\n%s", err, tail(out.String(), 5))
		case <-time.After(90 * time.Second):
			t.Fatal("mbsync hangs after Dovecot restarted")
		}
		waitFor(t, 10*time.Second, "the relayed session to end", func() bool {
			return c.events.count(bridge.ClientDisconnected, "") > disconnects
		})
		out2, err := runMbsync(t, cfg, 3*time.Minute)
		if err != nil {
			t.Fatalf("mbsync after the restart: %v\n%s", err, out2)
		}
		if ok, diff := sameMailbox(c.serverDigests(t), localDigests(t, local)); !ok {
			t.Errorf("after the restart and a new sync: %s", diff)
		}
	})
}

func splitAddr(t testing.TB, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
