package gui

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// TestMain lets the test binary serve as the PKCS#11 agent the session manager starts (design.md).
func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

// The whole chain on the bench: virtual card in pcscd, OpenSC through the agent, a real session manager, the real
// accounts service and a real Dovecot. The wizard's live test logs in with one PIN prompt and saves the account; the
// mailbox and a message then open without another prompt (same card session); unplugging the card shows the banner
// and "card needed", and takes every folder name, header and the open message off the mailbox window, which says
// why; plugging it back offers Reconnect (in the main window and the mailbox), which costs exactly one more PIN
// prompt, and the folders come back.
func TestBenchMailboxSurvivesCardReplug(t *testing.T) {
	b := bench.Start(t)
	dv := mailsrv.StartDovecot(t, b.PKI, mailsrv.DovecotOptions{Folders: 3, Messages: 5})

	var prompts atomic.Int32
	m := session.New(session.Config{Module: b.OpenSC, PINPrompt: func(context.Context, session.PINRequest) ([]byte, error) {
		prompts.Add(1)
		return []byte(bench.DefaultPIN), nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, reader.Watch(ctx)) }()
	svc := app.NewAccounts(app.OneManager(m), app.Dirs{Cache: t.TempDir()}, 0, 0)
	t.Cleanup(func() { svc.Close(); cancel(); <-done; m.Close() })

	store := &profile.Store{UserDir: t.TempDir()}
	a := newSerialApp(t)
	b.InsertWait(t, 0, 0)
	mw := newMainWindow(a, Options{Cards: managerCards{m}, Lang: words.English, Store: store, Mail: svc})
	v := mw.accounts
	waitUI(t, "the card's certificate", func() bool { return mw.cards.certList.Length() == 1 })

	// The wizard, with the real services: manual servers of this Dovecot, the card's certificate picked by itself,
	// the live test of IMAP and SMTP on the real chain, then save.
	var saved []*profile.Profile
	z := newWizard(mw.win, words.English, WizardDeps{Store: store, Mail: svc, Certs: m.Certificates}, nil,
		func(p *profile.Profile) { saved = append(saved, p) })
	z.show()
	test.Type(z.address.entry, bench.DefaultEmail(bench.AliceName))
	test.Tap(z.next)
	z.provider.list.SetSelectedIndex(slices.Index(z.provider.choices, choiceManual))
	test.Tap(z.next)
	ih, ip := splitHostPort(t, dv.IMAPS)
	sh, sp := splitHostPort(t, dv.SubmissionS)
	for i, hp := range []struct {
		host string
		port int
	}{{ih, ip}, {sh, sp}} {
		z.servers.srv[i].security.SetSelectedIndex(0) // implicit TLS
		z.servers.srv[i].host.SetText(hp.host)
		z.servers.srv[i].port.SetText(strconv.Itoa(hp.port))
	}
	z.servers.policy.SetSelected(words.T(words.English, "wizard.policy.default", nil))
	z.servers.addCAFile(dv.CAFile)
	if z.next.Disabled() {
		t.Fatal("servers page not valid")
	}
	test.Tap(z.next)
	waitUI(t, "the certificate picked", func() bool { return z.d.CertSHA256 != "" })
	test.Tap(z.next)
	waitUI(t, "the live test", func() bool { return z.check.ok || z.check.detail.Visible() })
	if !z.check.ok {
		t.Fatalf("live test failed: %s\nDovecot log:\n%s", shownText(mw.win.Canvas()), dv.Log())
	}
	test.Tap(z.next)
	z.save.name.SetText("alice")
	test.Tap(z.next)
	waitUI(t, "saved", func() bool { return len(saved) == 1 })
	if n := prompts.Load(); n != 1 {
		t.Fatalf("%d PIN prompts for the wizard's test, want 1", n)
	}
	mw.accounts.reload()
	waitUI(t, "the saved account", func() bool { return v.list.Length() == 1 })

	v.list.Select(0)
	test.Tap(button(t, mw.win.Canvas(), words.T(words.English, "accounts.open", nil)))
	bw := v.browsers["alice"]
	if bw == nil {
		t.Fatal("Open mailbox opened no window")
	}
	folders := func() bool {
		_, inbox := bw.b.folders["INBOX"]
		_, other := bw.b.folders["Folder0001"]
		return inbox && other && !bw.b.status.Visible() && !bw.b.progress.Visible()
	}
	waitUI(t, "folders", func() bool { return folders() || bw.b.status.Visible() })
	if !folders() {
		t.Fatalf("mailbox shows %q (%s)\nDovecot log:\n%s", bw.b.status.Text, bw.b.details.Text, dv.Log())
	}
	waitUI(t, "INBOX headers", func() bool { return bw.b.total == 5 && !bw.b.progress.Visible() })
	if v.status["alice"].state != stateConnected {
		t.Errorf("status %+v after opening the mailbox", v.status["alice"])
	}
	// A message opens in the reading pane, on the same connection (no other PIN prompt).
	bw.b.table.Select(widget.TableCellID{Row: 0, Col: 0})
	waitUI(t, "the newest message", func() bool { return bw.b.reader.msg != nil || bw.b.reader.empty.Visible() && !bw.b.reader.load.busy() })
	if bw.b.reader.msg == nil {
		t.Fatalf("message not opened: %q", bw.b.reader.empty.Text)
	}
	if m := bw.b.reader.msg; m.Subject != "Message 5" || m.Text != "Body of Message 5." {
		t.Errorf("message %q: %q", m.Subject, m.Text)
	}
	if n := prompts.Load(); n != 1 {
		t.Fatalf("%d PIN prompts after opening the mailbox and a message, want still 1", n)
	}
	private := []string{"Folder0001", "Message 5", "Body of Message 5.", "bench@"}
	shown := shownText(bw.win.Canvas())
	for _, p := range private {
		if !strings.Contains(shown, p) {
			t.Fatalf("the mailbox does not show %q before removal: the check after removal would prove nothing", p)
		}
	}

	b.RemoveWait(t, 0)
	waitUI(t, "card removed banner", func() bool {
		return mw.cards.banner.Visible() && mw.cards.banner.Text == words.T(words.English, "banner.card_removed", nil)
	})
	waitUI(t, "card needed", func() bool { return v.status["alice"].state == stateCardNeeded })
	if !shows(bw.win.Canvas(), words.Message(words.English, diagnosis.CardAbsent)) {
		t.Errorf("mailbox does not ask for the card: %q", bw.b.status.Text)
	}
	// Issue 9 item 6: nothing of the person's mail stays on the screen, and the browser says why.
	shown = shownText(bw.win.Canvas())
	for _, p := range private {
		if strings.Contains(shown, p) {
			t.Errorf("after removal the mailbox still shows %q", p)
		}
	}
	wantShown(t, bw.win.Canvas(), words.T(words.English, "folders.hidden", nil))

	b.InsertWait(t, 0, 0)
	waitUI(t, "reconnect offer", func() bool { return v.reconBar.Visible() && bw.b.reconnectB.Visible() })
	test.Tap(v.reconnect)
	waitUI(t, "reconnected", func() bool {
		st := v.status["alice"].state
		return st == stateConnected || st == stateFailed || st == stateCardNeeded
	})
	if st := v.status["alice"]; st.state != stateConnected {
		t.Fatalf("after Reconnect: status %+v (%s)", st, words.Message(words.English, st.code))
	}
	waitUI(t, "folders again", folders)
	waitUI(t, "INBOX headers again", func() bool { return bw.b.total == 5 && !bw.b.progress.Visible() })
	if n := prompts.Load(); n != 2 {
		t.Fatalf("%d PIN prompts in all, want exactly one more after reinsertion (2)", n)
	}
}

// managerCards is the cards view's service over one session manager and the machine's readers (what *app.Cards
// does for the app, without its reader watcher: this test feeds the manager itself).
type managerCards struct{ *session.Manager }

func (managerCards) Readers(ctx context.Context) ([]reader.Reader, error) { return reader.List(ctx) }
