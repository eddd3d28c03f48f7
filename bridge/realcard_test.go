package bridge_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/bridge"
)

// heldMbsync starts mbsync with cfg through the gate g and returns once the gate holds it (a share of the mailbox
// went through). exited receives mbsync's end; out collects its output.
func heldMbsync(t *testing.T, g *gate, cfg string) (exited chan error, out *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := mbsyncCmd(t, ctx, cfg)
	out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-g.paused:
	case err := <-exited:
		t.Fatalf("mbsync ended before the gate held it: %v\n%s", err, out.String())
	}
	return exited, out
}

// mailboxBytes is the size of Alice's mailbox on disk.
func (c *chain) mailboxBytes(t testing.TB) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(filepath.Join(c.dv.Dir, "mail", c.user), func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && (strings.Contains(p, "/cur/") || strings.Contains(p, "/new/")) {
			if fi, err := de.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestBridgeMbsyncCardPull: mbsync (isync) syncs a whole mailbox (non-ASCII folder names, 300 messages, attachments)
// through the bridge over local STARTTLS from Dovecot with the virtual card; the card is pulled in the middle of
// the transfer: the relayed session ends at once and mbsync fails; while the card is out, imaplib, smtplib and curl
// are told to wait (NO [UNAVAILABLE], 454); the card goes back and a second mbsync completes with every message of
// every folder identical to the server's, after one PIN prompt for the new card generation; then Bruno's card in
// the same reader is refused for Alice's account and never logs in to the server.
func TestBridgeMbsyncCardPull(t *testing.T) {
	c := newChain(t, fillMailbox)
	server := c.serverDigests(t)
	if n := countMessages(server); n != 300 {
		t.Fatalf("server mailbox holds %d messages, want 300", n)
	}
	size := c.mailboxBytes(t)
	local := t.TempDir()
	g := newGate(t, c.br.IMAPAddr(), size/3)
	cfg := c.mbsyncConfig(t, local, g.addr(), viaBridgeTLS)

	exited, out := heldMbsync(t, g, cfg)
	prompts := c.prompts.Load()
	c.remove(t)
	waitFor(t, 5*time.Second, "the relayed session to close on card removal", func() bool {
		return c.events.count(bridge.ClientDisconnected, "card_removed") == 1
	})
	g.open()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatalf("mbsync succeeded although the card was pulled mid-sync:\n%s", out.String())
		}
		t.Logf("first mbsync, card pulled: %v\n%s", err, tail(out.String(), 4))
	case <-time.After(60 * time.Second):
		t.Fatal("mbsync hangs after the card was pulled")
	}
	partial := countMessages(localDigests(t, local))
	if partial == 0 || partial >= 300 {
		t.Errorf("%d messages before the pull: want a partial sync", partial)
	}

	// While the card is out.
	host, iport := splitAddr(t, c.br.IMAPAddr())
	_, sport := splitAddr(t, c.br.SMTPAddr())
	if o, err := python(t, pyIMAP, host, iport, c.user, c.pw, ""); err != nil ||
		!strings.Contains(o, "REFUSED") || !strings.Contains(o, "[UNAVAILABLE] CardMail: No card is inserted") {
		t.Errorf("imaplib without the card: %v\n%s", err, o)
	}
	if o, err := python(t, pySMTP, host, sport, c.user, c.pw, "", "", ""); err != nil ||
		!strings.Contains(o, "REFUSED 454") || !strings.Contains(o, "No card is inserted") {
		t.Errorf("smtplib without the card: %v\n%s", err, o)
	}
	if o, err := curl(t, "--user", c.user+":"+c.pw, "imap://"+c.br.IMAPAddr()+"/"); err == nil {
		t.Errorf("curl listed folders without the card:\n%s", o)
	}
	if st := c.br.Status(); st.Card != bridge.CardAbsent || st.LastCode != "card_absent" {
		t.Errorf("status without the card: %+v", st)
	}

	// Back: the same mbsync command completes, one PIN prompt.
	c.insert(t, 0)
	if o, err := runMbsync(t, cfg, 3*time.Minute); err != nil {
		t.Fatalf("second mbsync: %v\n%s", err, o)
	}
	if p := c.prompts.Load() - prompts; p != 1 {
		t.Errorf("%d PIN prompts after the card came back, want 1", p)
	}
	got := localDigests(t, local)
	if ok, diff := sameMailbox(server, got); !ok {
		t.Fatalf("local mailbox differs from the server's: %s", diff)
	}
	t.Logf("synced %d messages in %d folders, identical to the server (%d before the pull)", countMessages(got), len(got), partial)

	// Another person's card never serves this account.
	loginsBefore := strings.Count(c.dv.Log(), "Login: user=<")
	c.remove(t)
	c.insert(t, 1)
	if o, err := python(t, pyIMAP, host, iport, c.user, c.pw, ""); err != nil || !strings.Contains(o, "REFUSED") ||
		!strings.Contains(o, "[UNAVAILABLE]") {
		t.Errorf("imaplib with Bruno's card: %v\n%s", err, o)
	}
	var last bridge.Event
	for _, ev := range c.events.all() {
		if ev.Kind == bridge.LoginRefused {
			last = ev
		}
	}
	if last.Code != "card_wrong_identity" {
		t.Errorf("refusal with Bruno's card: code %q (%v), want card_wrong_identity", last.Code, last.Err)
	}
	log := c.dv.Log()
	if strings.Contains(log, "user=<"+strings.ToLower("bruno.petit")) || strings.Count(log, "Login: user=<") != loginsBefore {
		t.Errorf("a login reached Dovecot with Bruno's card:\n%s", tail(log, 10))
	}
}
