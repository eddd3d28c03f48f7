package gui

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// serialDriver makes the test driver behave like the real one for fyne.Do: functions handed over from other
// goroutines are queued and run on the test goroutine when it waits (waitUI), so widgets are only ever touched by one
// goroutine. (The plain test driver runs them at once on the calling goroutine.)
type serialDriver struct {
	fyne.Driver
	mu    sync.Mutex
	queue []func()
}

func (d *serialDriver) DoFromGoroutine(f func(), _ bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(d.queue, f)
}

// drain runs the queued functions, including those they queue, on the calling (test) goroutine.
func (d *serialDriver) drain() {
	for {
		d.mu.Lock()
		q := d.queue
		d.queue = nil
		d.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, f := range q {
			f()
		}
	}
}

type serialApp struct {
	fyne.App
	drv *serialDriver
}

func (a *serialApp) Driver() fyne.Driver { return a.drv }

// newSerialApp is test.NewTempApp with a serialDriver, made the current app (fyne.Do goes through it).
func newSerialApp(t testing.TB) *serialApp {
	a := test.NewTempApp(t)
	s := &serialApp{App: a, drv: &serialDriver{Driver: a.Driver()}}
	fyne.SetCurrentApp(s)
	serial = s.drv
	t.Cleanup(func() { serial = nil })
	// Close the test's windows while this app is still the current one, so that their views end and drop the
	// results of background work still under way (NewTempApp's cleanup then installs a fresh plain app, whose
	// fyne.Do would run those results on their own goroutines, concurrently with the next test).
	t.Cleanup(func() {
		for _, w := range slices.Clone(s.Driver().AllWindows()) { // Close edits the driver's own slice
			if w != nil {
				w.Close()
			}
		}
	})
	return s
}

// serial is the driver of the running test's serialApp.
var serial *serialDriver

// waitUI runs the UI work queued by background goroutines until cond holds, failing after 60 s (a bound for the
// bench's card logins, not a timing assertion).
func waitUI(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if serial != nil {
			serial.drain()
		}
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acctStore is an AccountStore in memory.
type acctStore struct {
	mu      sync.Mutex
	entries []profile.Entry
	deleted []string
}

func (s *acctStore) List() ([]profile.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]profile.Entry(nil), s.entries...), nil
}

func (s *acctStore) Save(p *profile.Profile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries {
		if s.entries[i].Name == p.Name {
			s.entries[i] = profile.Entry{Name: p.Name, Scope: profile.ScopeUser, Profile: p.Clone()}
			return nil
		}
	}
	s.entries = append(s.entries, profile.Entry{Name: p.Name, Scope: profile.ScopeUser, Profile: p.Clone()})
	return nil
}

func (s *acctStore) Create(p *profile.Profile) error {
	s.mu.Lock()
	for _, e := range s.entries {
		if strings.EqualFold(e.Name, p.Name) {
			s.mu.Unlock()
			return &profile.ExistsError{Name: p.Name, Existing: e.Name}
		}
	}
	s.mu.Unlock()
	return s.Save(p)
}

func (s *acctStore) Rename(old string, p *profile.Profile) error {
	if err := s.Save(p); err != nil {
		return err
	}
	return s.Delete(old)
}

func (s *acctStore) Delete(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.entries {
		if e.Name == name {
			if e.ReadOnly {
				return fmt.Errorf("delete %q: %w", name, profile.ErrReadOnly)
			}
			s.entries = append(s.entries[:i], s.entries[i+1:]...)
			s.deleted = append(s.deleted, name)
			return nil
		}
	}
	return fmt.Errorf("delete %q: %w", name, profile.ErrNotFound)
}

// acctMail is a MailService with canned answers and call records.
type acctMail struct {
	mu         sync.Mutex
	folders    []mail.Folder
	headers    map[string]int // folder → message count; headers are generated
	folderErr  error
	headersErr error
	messageErr error
	reports    map[string]*diagnosis.Report // by protocol
	sendErr    error
	bodies     []string
	calls      []string
	pages      []int
}

func (f *acctMail) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *acctMail) Check(_ context.Context, p *profile.Profile, protocol string,
	progress func(diagnosis.Step)) *diagnosis.Report {
	f.record("check " + protocol)
	f.mu.Lock()
	r := f.reports[protocol]
	f.mu.Unlock()
	if r == nil {
		r = &diagnosis.Report{OK: true, Code: diagnosis.OK,
			Steps: []diagnosis.Step{{Name: diagnosis.StepDNS, OK: true, Ms: 1}}}
	}
	for _, s := range r.Steps {
		if progress != nil {
			progress(s)
		}
	}
	return r
}

func (f *acctMail) Folders(context.Context, *profile.Profile) ([]mail.Folder, error) {
	f.record("folders")
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mail.Folder(nil), f.folders...), f.folderErr
}

func (f *acctMail) Headers(_ context.Context, _ *profile.Profile, folder string, page, pageSize int) ([]mail.Header, int, error) {
	f.record("headers " + folder)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages = append(f.pages, page)
	if f.headersErr != nil {
		return nil, 0, f.headersErr
	}
	total := f.headers[folder]
	var out []mail.Header
	for i := page * pageSize; i < total && i < (page+1)*pageSize; i++ {
		n := total - i // newest first
		out = append(out, mail.Header{UID: uint32(n), Date: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Hour),
			From: fmt.Sprintf("Sender %d <s%d@example.org>", n, n), Subject: fmt.Sprintf("Message %d", n)})
	}
	return out, total, nil
}

// Message makes up the message with UID n of any folder: from "Sender n", subject "Message n", a text naming a
// patient, and one PDF attachment; an odd UID is an HTML mail shown as text.
func (f *acctMail) Message(_ context.Context, _ *profile.Profile, ref mail.MessageRef) (*mail.Message, error) {
	f.record("message " + ref.Folder)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.messageErr != nil {
		return nil, f.messageErr
	}
	n := ref.UID
	return &mail.Message{Ref: ref, Date: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Hour),
		From: fmt.Sprintf("Sender %d <s%d@example.org>", n, n), To: []string{"alice.martin@cardmail.test"},
		Subject: fmt.Sprintf("Message %d", n), Text: fmt.Sprintf("Results of patient Dupont-%d are normal.", n),
		FromHTML: n%2 == 1,
		Attachments: []mail.Attachment{{Part: []int{2}, Name: fmt.Sprintf("report-%d.pdf", n), Type: "application/pdf",
			Size: 123456}}}, nil
}

// Attachment writes a few bytes naming the message and the part.
func (f *acctMail) Attachment(_ context.Context, _ *profile.Profile, ref mail.MessageRef, part []int, w io.Writer) (int64, error) {
	f.record("attachment")
	n, err := fmt.Fprintf(w, "%%PDF report of message %d part %v", ref.UID, part)
	return int64(n), err
}

func (f *acctMail) SendTest(_ context.Context, p *profile.Profile, body string) (*mail.Sent, error) {
	f.record("send")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, body)
	if f.sendErr != nil {
		return &mail.Sent{MessageID: "2@cardmail", From: p.Address, To: []string{p.Address}}, f.sendErr
	}
	return &mail.Sent{MessageID: "1@cardmail", From: p.Address, To: []string{p.Address}}, nil
}

func (f *acctMail) Discover(context.Context, string) (*autoconfig.Result, error) {
	return nil, errors.New("fake: no discovery")
}

func (f *acctMail) called(s string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == s {
			n++
		}
	}
	return n
}

func testProfile(t *testing.T, name, address string) *profile.Profile {
	t.Helper()
	pr, _ := profile.PresetByID(profile.PresetGeneric)
	p, err := profile.FromPreset(pr, address)
	if err != nil {
		t.Fatal(err)
	}
	p.Name = name
	return p
}

func testStore(t *testing.T) *acctStore {
	return &acctStore{entries: []profile.Entry{
		{Name: "alice", Scope: profile.ScopeUser, Profile: testProfile(t, "alice", "alice.martin@cardmail.test")},
		{Name: "broken", Scope: profile.ScopeUser, Err: &profile.FileError{Path: "/x/broken.json", Err: profile.ErrTooLarge}},
		{Name: "hospital", Scope: profile.ScopeSystem, ReadOnly: true,
			Profile: testProfile(t, "hospital", "dr.martin@hopital.example")},
	}}
}

func testFolders() []mail.Folder {
	return []mail.Folder{
		{Name: "INBOX", Delim: '/', Messages: 120, Unseen: 3},
		{Name: "Archives", Delim: '/', NoSelect: true},
		{Name: "Archives/2025", Delim: '/', Messages: 4},
		{Name: "Sent", Delim: '/', Messages: 2},
		{Name: "Work/Projects", Delim: '/', Messages: 1, Unseen: 1}, // "Work" itself is not listed
	}
}

// fixedCards is the cards view's fake with certificates whose dates do not move (goldens).
func fixedCards(t *testing.T) *fakeCards {
	return &fakeCards{
		readers: []reader.Reader{{Name: "Reader 0", CardPresent: true}},
		certs: []session.CardCert{testCert(t, "Dr Alice Martin", time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})},
	}
}

// button finds the visible button labelled text on the canvas (overlays first), or fails.
func button(t *testing.T, c fyne.Canvas, text string) *widget.Button {
	t.Helper()
	var found *widget.Button
	roots := []fyne.CanvasObject{}
	if top := c.Overlays().Top(); top != nil {
		roots = append(roots, top)
	}
	roots = append(roots, c.Content())
	for _, r := range roots {
		walk(r, func(o fyne.CanvasObject) {
			if b, ok := o.(*widget.Button); ok && found == nil && b.Text == text {
				found = b
			}
		})
		if found != nil {
			return found
		}
	}
	t.Fatalf("no button %q on the canvas", text)
	return nil
}

// shows reports whether the canvas (content and overlays) shows a label or text containing text.
func shows(c fyne.Canvas, text string) bool {
	found := false
	check := func(o fyne.CanvasObject) {
		switch x := o.(type) {
		case *widget.Label:
			found = found || strings.Contains(x.Text, text)
		case *canvas.Text:
			found = found || strings.Contains(x.Text, text)
		}
	}
	walk(c.Content(), check)
	for _, o := range c.Overlays().List() {
		walk(o, check)
	}
	return found
}

func newTestMain(t *testing.T, lang words.Lang, store *acctStore, m *acctMail) (fyne.App, *mainWindow, *fakeCards) {
	t.Helper()
	t.Setenv("CARDMAIL_LANG", "")
	a := newSerialApp(t)
	cards := fixedCards(t)
	mw := newMainWindow(a, Options{Cards: cards, Lang: lang, Store: store, Mail: m})
	waitUI(t, "accounts", func() bool { return mw.accounts.list.Length() == len(store.entries) })
	waitUI(t, "certificates", func() bool { return mw.cards.certList.Length() == 1 && !mw.cards.progress.Visible() })
	return a, mw, cards
}

// The main window with accounts in every state, in both languages.
func TestMainWindowAccountsGolden(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			_, mw, _ := newTestMain(t, lang, testStore(t), &acctMail{})
			mw.accounts.setStatus("alice", accountStatus{state: stateConnected})
			mw.accounts.setStatus("hospital", accountStatus{state: stateFailed, code: diagnosis.ServerCertUntrusted})
			test.AssertRendersToMarkup(t, "main_accounts_"+string(lang)+".xml", mw.win.Canvas())
			for _, want := range []string{words.T(lang, "accounts.status.connected", nil),
				words.T(lang, "accounts.status.failed", map[string]any{"Reason": words.Message(lang, diagnosis.ServerCertUntrusted)}),
				words.T(lang, "accounts.broken", nil), words.T(lang, "accounts.preset", map[string]any{"Name": "hospital"})} {
				if !shows(mw.win.Canvas(), want) {
					t.Errorf("main window does not show %q", want)
				}
			}
		})
	}
}

func TestAccountButtonsFollowSelection(t *testing.T) {
	_, mw, _ := newTestMain(t, words.English, testStore(t), &acctMail{})
	v := mw.accounts
	cases := []struct {
		row                            int
		edit, del, open, diag, sendTst bool
	}{
		{-1, false, false, false, false, false},
		{0, true, true, true, true, true},     // alice: a user profile
		{1, false, true, false, false, false}, // broken file: only delete
		{2, true, false, true, true, true},    // system preset: read-only, never deleted
	}
	for _, tc := range cases {
		if tc.row < 0 {
			v.list.UnselectAll()
		} else {
			v.list.Select(tc.row)
		}
		got := []bool{!v.edit.Disabled(), !v.del.Disabled(), !v.open.Disabled(), !v.diagnose.Disabled(), !v.sendTest.Disabled()}
		want := []bool{tc.edit, tc.del, tc.open, tc.diag, tc.sendTst}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("row %d: edit/delete/open/diagnose/send enabled %v, want %v", tc.row, got, want)
		}
	}
	// Even if the button were reached, a preset is not deleted.
	v.list.Select(2)
	v.confirmDelete()
	if len(mw.win.Canvas().Overlays().List()) != 0 {
		t.Error("delete confirmation shown for a read-only preset")
	}
}

func TestDeleteAsksFirst(t *testing.T) {
	store := testStore(t)
	_, mw, _ := newTestMain(t, words.French, store, &acctMail{})
	c := mw.win.Canvas()
	mw.accounts.list.Select(0)
	test.Tap(button(t, c, words.T(words.French, "accounts.delete", nil)))
	if !shows(c, "alice") || c.Overlays().Top() == nil {
		t.Fatal("no confirmation")
	}
	test.Tap(button(t, c, words.T(words.French, "pin.cancel", nil)))
	if len(store.deleted) != 0 {
		t.Fatal("deleted without confirmation")
	}
	test.Tap(button(t, c, words.T(words.French, "accounts.delete", nil)))
	test.Tap(button(t, c, words.T(words.French, "accounts.delete", nil))) // the dialog's confirm button (overlay first)
	waitUI(t, "deletion", func() bool { return mw.accounts.list.Length() == 2 })
	if fmt.Sprint(store.deleted) != "[alice]" {
		t.Fatalf("deleted %v", store.deleted)
	}
}

func TestDiagnoseRunsBothProtocolsThenShowsReport(t *testing.T) {
	lang := words.English
	m := &acctMail{reports: map[string]*diagnosis.Report{
		diagnosis.ProtocolSMTP: {Code: diagnosis.ConnectRefused, Message: words.Message(lang, diagnosis.ConnectRefused),
			Remedy: words.Remedy(lang, diagnosis.ConnectRefused), Steps: []diagnosis.Step{
				{Name: diagnosis.StepDNS, OK: true, Ms: 1}, {Name: diagnosis.StepConnect, OK: false, Ms: 2, Detail: "refused"}}},
	}}
	_, mw, _ := newTestMain(t, lang, testStore(t), m)
	c := mw.win.Canvas()
	mw.accounts.list.Select(0)
	test.Tap(button(t, c, words.T(lang, "accounts.diagnose", nil)))
	waitUI(t, "report", func() bool { return shows(c, words.Message(lang, diagnosis.ConnectRefused)) })
	if m.called("check imap") != 1 || m.called("check smtp") != 1 {
		t.Errorf("calls %v", m.calls)
	}
	waitUI(t, "failed status", func() bool { return mw.accounts.status["alice"].state == stateFailed })
	if mw.accounts.status["alice"].code != diagnosis.ConnectRefused {
		t.Errorf("status %+v", mw.accounts.status["alice"])
	}
}

func TestSendTestInPlainWords(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			m := &acctMail{}
			_, mw, _ := newTestMain(t, lang, testStore(t), m)
			c := mw.win.Canvas()
			mw.accounts.list.Select(0)
			test.Tap(button(t, c, words.T(lang, "accounts.send_test", nil)))
			want := words.T(lang, "sendtest.sent", map[string]any{"To": "alice.martin@cardmail.test"})
			waitUI(t, "sent message", func() bool { return shows(c, want) })
			if len(m.bodies) != 1 || m.bodies[0] != words.T(lang, "sendtest.body", map[string]any{"Address": "alice.martin@cardmail.test"}) {
				t.Errorf("body %q is not the %s one", m.bodies, lang)
			}
			c.Overlays().Top().Hide()
			c.Overlays().Remove(c.Overlays().Top())

			// A failure: a failed test, said as such (nothing is kept for later), with the code's words; the raw error
			// only under the details.
			m.mu.Lock()
			m.sendErr = &mail.ProtocolError{Step: "send", Response: "554 5.7.1 relay denied"}
			m.mu.Unlock()
			test.Tap(button(t, c, words.T(lang, "accounts.send_test", nil)))
			waitUI(t, "failure", func() bool { return shows(c, words.T(lang, "sendtest.failed", nil)) })
			code := errorCode(m.sendErr)
			if !shows(c, words.Message(lang, code)) {
				t.Errorf("failure does not say %q", words.Message(lang, code))
			}
			c.Overlays().Top().Hide()
			c.Overlays().Remove(c.Overlays().Top())

			// The connection failed after the message went out: "it may still arrive", not "not sent".
			m.mu.Lock()
			m.sendErr = fmt.Errorf("%w: %w", mail.ErrDeliveryUnconfirmed, io.ErrUnexpectedEOF)
			m.mu.Unlock()
			test.Tap(button(t, c, words.T(lang, "accounts.send_test", nil)))
			waitUI(t, "unconfirmed", func() bool { return shows(c, words.T(lang, "sendtest.unconfirmed", nil)) })
			if shows(c, words.T(lang, "sendtest.failed", nil)) {
				t.Error("an unconfirmed message is shown as not sent")
			}
		})
	}
}

// Card removal: banner and "card needed"; reinsertion offers Reconnect, which reconnects and refreshes the mailbox.
func TestCardRemovalAndReconnect(t *testing.T) {
	lang := words.English
	m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 3}}
	_, mw, cards := newTestMain(t, lang, testStore(t), m)
	v := mw.accounts
	v.list.Select(0)
	test.Tap(button(t, mw.win.Canvas(), words.T(lang, "accounts.open", nil)))
	waitUI(t, "connected", func() bool { return v.status["alice"].state == stateConnected })
	bw := v.browsers["alice"]
	if bw == nil || bw.win.Canvas() == nil {
		t.Fatal("no mailbox window")
	}
	waitUI(t, "headers", func() bool { return len(bw.b.headers) == 3 })

	cards.mu.Lock()
	cards.certs, cards.certErr = nil, &session.CardError{Err: session.ErrCardAbsent}
	cards.mu.Unlock()
	m.mu.Lock()
	m.folderErr = &session.CardError{Err: session.ErrCardAbsent}
	m.mu.Unlock()
	cards.emit(session.Event{Kind: session.CardRemoved, Reader: "Reader 0"})
	waitUI(t, "banner", func() bool { return mw.cards.banner.Visible() })
	if mw.cards.banner.Text != words.T(lang, "banner.card_removed", nil) {
		t.Errorf("banner %q", mw.cards.banner.Text)
	}
	if v.status["alice"].state != stateCardNeeded || !shows(mw.win.Canvas(), words.T(lang, "accounts.status.card_needed", nil)) {
		t.Errorf("status %+v", v.status["alice"])
	}
	insert := words.Message(lang, diagnosis.CardAbsent)
	if !shows(bw.win.Canvas(), insert) {
		t.Errorf("mailbox does not say %q", insert)
	}
	// A refresh without the card keeps saying so.
	test.Tap(bw.b.refreshB)
	waitUI(t, "still card needed", func() bool { return m.called("folders") == 2 && !bw.b.progress.Visible() })
	if !shows(bw.win.Canvas(), insert) || v.status["alice"].state != stateCardNeeded {
		t.Error("refresh without the card does not ask for it")
	}

	m.mu.Lock()
	m.folderErr = nil
	m.mu.Unlock()
	cards.emit(session.Event{Kind: session.CardInserted, Reader: "Reader 0"})
	waitUI(t, "reconnect offer", func() bool { return v.reconBar.Visible() })
	test.Tap(button(t, mw.win.Canvas(), words.T(lang, "accounts.reconnect", nil)))
	waitUI(t, "reconnected", func() bool { return v.status["alice"].state == stateConnected })
	waitUI(t, "mailbox refreshed", func() bool { return m.called("folders") == 4 && !bw.b.progress.Visible() })
	if bw.b.status.Visible() {
		t.Errorf("mailbox still shows %q", bw.b.status.Text)
	}
	bw.win.Close()
	if v.browsers["alice"] != nil {
		t.Error("closed mailbox still tracked")
	}
}

func TestFolderBrowserGolden(t *testing.T) {
	old := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = old })
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			a := newSerialApp(t)
			m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 120}}
			w := OpenFolderBrowser(a, lang, m, testProfile(t, "alice", "alice.martin@cardmail.test"), nil)
			waitUI(t, "headers", func() bool { return shows(w.Canvas(), "Message 120") })
			test.AssertRendersToMarkup(t, "folders_"+string(lang)+".xml", w.Canvas())
		})
	}
}

func TestFolderBrowserTreePagingAndErrors(t *testing.T) {
	w := newSerialApp(t).NewWindow("t")
	m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 120, "Sent": 2}}
	b := newFolderBrowser(w, words.English, m, testProfile(t, "alice", "alice.martin@cardmail.test"))
	w.SetContent(b.content())
	w.Resize(fyne.NewSize(900, 560))
	b.refresh()
	waitUI(t, "INBOX page 1", func() bool { return len(b.headers) == PageSize && b.selected == "INBOX" })

	// Tree: hierarchy from the delimiter, a missing parent added as NoSelect, INBOX first.
	if got := fmt.Sprint(b.children[""]); got != "[INBOX Archives Sent Work]" {
		t.Errorf("roots %s", got)
	}
	if got := fmt.Sprint(b.children["Work"]); got != "[Work/Projects]" || !b.folders["Work"].NoSelect {
		t.Errorf("Work children %s, NoSelect %v", got, b.folders["Work"].NoSelect)
	}
	b.tree.Select("Archives")
	if b.selected != "INBOX" {
		t.Errorf("NoSelect folder selected: %s", b.selected)
	}

	// Paging: 120 messages are 3 pages of 50; Next/Previous move and stop at the ends.
	if !b.prev.Disabled() || b.next.Disabled() {
		t.Error("page 1: Previous should be off, Next on")
	}
	test.Tap(b.next)
	test.Tap(b.next)
	waitUI(t, "page 3", func() bool { return b.page == 2 && len(b.headers) == 20 && !b.progress.Visible() })
	if !b.next.Disabled() || b.prev.Disabled() {
		t.Error("last page: Next should be off, Previous on")
	}
	if b.pageLabel.Text != words.T(words.English, "folders.page", map[string]any{"Page": 3, "Pages": 3, "Total": "120"}) {
		t.Errorf("page label %q", b.pageLabel.Text)
	}
	test.Tap(b.prev)
	waitUI(t, "page 2", func() bool { return b.page == 1 && b.headers[0].Subject == "Message 70" && !b.progress.Visible() })

	// Another folder starts at its first page.
	b.tree.Select("Sent")
	waitUI(t, "Sent", func() bool { return b.selected == "Sent" && len(b.headers) == 2 && !b.progress.Visible() })
	if b.page != 0 || !b.next.Disabled() {
		t.Errorf("Sent: page %d", b.page)
	}

	// A card-absent error says to insert the card; a refresh afterwards works.
	m.mu.Lock()
	m.folderErr = fmt.Errorf("imap login: %w", &session.CardError{Reader: "Reader 0", Err: session.ErrCardAbsent})
	m.mu.Unlock()
	test.Tap(b.refreshB)
	waitUI(t, "error", func() bool { return b.status.Visible() })
	if !strings.Contains(b.status.Text, words.Message(words.English, diagnosis.CardAbsent)) ||
		!strings.Contains(b.status.Text, words.Remedy(words.English, diagnosis.CardAbsent)) {
		t.Errorf("status %q", b.status.Text)
	}
	if strings.Contains(b.status.Text, "imap login") {
		t.Error("raw error text in the headline")
	}
	m.mu.Lock()
	m.folderErr = nil
	m.mu.Unlock()
	test.Tap(b.refreshB)
	waitUI(t, "recovered", func() bool { return !b.status.Visible() && len(b.headers) == 2 && !b.progress.Visible() })
	if b.selected != "Sent" {
		t.Errorf("selection lost: %s", b.selected)
	}
}

// The Stop button cancels a slow load and the window stays usable.
func TestFolderBrowserCancel(t *testing.T) {
	w := newSerialApp(t).NewWindow("t")
	slow := &slowMail{acctMail: acctMail{folders: testFolders()}, started: make(chan struct{}, 1)}
	b := newFolderBrowser(w, words.English, slow, testProfile(t, "alice", "alice.martin@cardmail.test"))
	w.SetContent(b.content())
	done := make(chan struct{})
	go func() { b.refresh(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("refresh blocked")
	}
	<-slow.started
	if !b.progress.Visible() || !b.stop.Visible() {
		t.Fatal("no progress or stop button while loading")
	}
	test.Tap(b.stop)
	waitUI(t, "cancelled", func() bool { return slow.cancelled.Load() })
	if b.progress.Visible() || b.refreshB.Disabled() {
		t.Error("progress still shown after cancel")
	}
}

// slowMail's Folders waits for its context.
type slowMail struct {
	acctMail
	started   chan struct{}
	cancelled atomic.Bool
}

func (s *slowMail) Folders(ctx context.Context, _ *profile.Profile) ([]mail.Folder, error) {
	s.started <- struct{}{}
	<-ctx.Done()
	s.cancelled.Store(true)
	return nil, ctx.Err()
}

func TestFolderTree(t *testing.T) {
	cases := []struct {
		name string
		in   []mail.Folder
		want map[string]string // parent → children
	}{
		{"flat", []mail.Folder{{Name: "Sent"}, {Name: "INBOX"}}, map[string]string{"": "[INBOX Sent]"}},
		{"nested with dots", []mail.Folder{{Name: "INBOX", Delim: '.'}, {Name: "INBOX.a", Delim: '.'}, {Name: "INBOX.a.b", Delim: '.'}},
			map[string]string{"": "[INBOX]", "INBOX": "[INBOX.a]", "INBOX.a": "[INBOX.a.b]"}},
		{"missing parents", []mail.Folder{{Name: "x/y/z", Delim: '/'}}, map[string]string{"": "[x]", "x": "[x/y]", "x/y": "[x/y/z]"}},
		{"trailing delimiter", []mail.Folder{{Name: "a/", Delim: '/'}}, map[string]string{"": "[a]", "a": "[a/]"}},
		{"leading delimiter", []mail.Folder{{Name: "/a", Delim: '/'}}, map[string]string{"": "[/a]"}},
		{"empty name ignored", []mail.Folder{{Name: ""}, {Name: "INBOX"}}, map[string]string{"": "[INBOX]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, children := folderTree(tc.in)
			got := map[string]string{}
			for k, v := range children {
				got[k] = fmt.Sprint(v)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("tree %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzFolderTree: whatever names the server sends, every folder is in the tree exactly once, reachable from the root.
func FuzzFolderTree(f *testing.F) {
	f.Add("INBOX\nINBOX/a\nb/c/d", '/')
	f.Add("a..b\n.\n..", '.')
	f.Fuzz(func(t *testing.T, names string, delim rune) {
		var fs []mail.Folder
		for _, n := range strings.Split(names, "\n") {
			fs = append(fs, mail.Folder{Name: n, Delim: delim})
		}
		byName, children := folderTree(fs)
		seen := map[string]int{}
		var visit func(id string, depth int)
		visit = func(id string, depth int) {
			if depth > len(names)+2 {
				t.Fatalf("cycle at %q", id)
			}
			for _, c := range children[id] {
				seen[c]++
				visit(c, depth+1)
			}
		}
		visit("", 0)
		for n := range byName {
			if seen[n] != 1 {
				t.Fatalf("folder %q appears %d times", n, seen[n])
			}
			_ = leafName(byName[n])
		}
	})
}
