package gui

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// openTestBrowser opens a folder browser on the fake mailbox and waits for INBOX's first page.
func openTestBrowser(t *testing.T, lang words.Lang, m *acctMail) (fyne.Window, *folderBrowser) {
	t.Helper()
	a := newSerialApp(t)
	w, b := openBrowser(a, lang, m, testProfile(t, "alice", "alice.martin@cardmail.test"), nil, nil)
	waitUI(t, "INBOX headers", func() bool { return b.selected == "INBOX" && len(b.headers) > 0 && !b.progress.Visible() })
	return w, b
}

// A click on a header opens the message under the list: its headers, its text, its attachment with size and Save.
func TestFolderBrowserOpensMessage(t *testing.T) {
	old := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = old })
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 3}}
			w, b := openTestBrowser(t, lang, m)
			c := w.Canvas()
			wantShown(t, c, words.T(lang, "message.placeholder", nil))
			b.table.Select(widget.TableCellID{Row: 1, Col: 2}) // "Message 2" (newest first)
			waitUI(t, "message", func() bool { return b.reader.msg != nil })
			if b.reader.msg.Ref != (mail.MessageRef{Folder: "INBOX", UID: 2}) {
				t.Errorf("opened %+v", b.reader.msg.Ref)
			}
			size := map[words.Lang]string{words.English: "123.5 KB", words.French: "123,5 Ko"}[lang]
			wantShown(t, c, "Message 2", "Sender 2 <s2@example.org>", "alice.martin@cardmail.test", "2026-03-01 11:00",
				"Results of patient Dupont-2 are normal.", "report-2.pdf — "+size,
				words.T(lang, "message.attachments", map[string]any{"N": 1}), words.T(lang, "message.save", nil))
			if strings.Contains(shownText(c), words.T(lang, "message.from_html", nil)) {
				t.Error("a plain text message is said to be HTML")
			}
			test.AssertRendersToMarkup(t, "message_"+string(lang)+".xml", c)

			// An HTML message says it is shown as text.
			b.table.Select(widget.TableCellID{Row: 0, Col: 1})
			waitUI(t, "HTML message", func() bool { return b.reader.msg != nil && b.reader.msg.Ref.UID == 3 })
			wantShown(t, c, words.T(lang, "message.from_html", nil), "Results of patient Dupont-3 are normal.")

			// Another folder: the message leaves the screen.
			b.tree.Select("Sent")
			waitUI(t, "Sent", func() bool { return b.selected == "Sent" && !b.progress.Visible() })
			if b.reader.msg != nil || strings.Contains(shownText(c), "Dupont") {
				t.Error("the message of INBOX still shown in Sent")
			}
		})
	}
}

// Save writes the attachment where the person chose, atomically; a failure says so and leaves nothing behind.
func TestMessageSaveAttachment(t *testing.T) {
	m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 3}}
	w, b := openTestBrowser(t, words.French, m)
	b.table.Select(widget.TableCellID{Row: 0, Col: 0})
	waitUI(t, "message", func() bool { return b.reader.msg != nil })
	att := b.reader.msg.Attachments[0]

	dir := t.TempDir()
	path := filepath.Join(dir, att.Name)
	wc, err := storage.Writer(storage.NewFileURI(path)) // what the save dialog hands over: the file, created empty
	if err != nil {
		t.Fatal(err)
	}
	b.reader.saveTo(wc, att)
	waitUI(t, "saved", func() bool { return !b.reader.attach.busy() })
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "%PDF report of message 3 part [2]" {
		t.Fatalf("file %q, %v", got, err)
	}
	wantShown(t, w.Canvas(), words.T(words.French, "message.saved", map[string]any{"Path": path}))
	if m.called("attachment") != 1 {
		t.Errorf("calls %v", m.calls)
	}

	// The service fails: the file the dialog created is removed, no temporary file is left, the words say so.
	m.mu.Lock()
	m.messageErr = nil
	m.mu.Unlock()
	failing := &failingAttachments{acctMail: m}
	b.reader.svc = failing
	path2 := filepath.Join(dir, "second.pdf")
	wc2, err := storage.Writer(storage.NewFileURI(path2))
	if err != nil {
		t.Fatal(err)
	}
	b.reader.saveTo(wc2, att)
	waitUI(t, "failure", func() bool { return !b.reader.attach.busy() })
	if _, err := os.Stat(path2); !os.IsNotExist(err) {
		t.Errorf("failed save left %s: %v", path2, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".cardmail-attachment-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	wantShown(t, w.Canvas(), words.T(words.French, "message.save_failed", map[string]any{"Name": att.Name}),
		words.Message(words.French, diagnosis.CardRemoved))
}

// failingAttachments writes half an attachment, then loses the card.
type failingAttachments struct{ *acctMail }

func (f *failingAttachments) Attachment(_ context.Context, _ *profile.Profile, _ mail.MessageRef, _ []int, w io.Writer) (int64, error) {
	n, _ := w.Write([]byte("%PDF half"))
	return int64(n), &session.CardError{Err: session.ErrCardRemoved}
}

// Issue 9 item 6: the card leaves, and no window keeps showing that person's mail: folder names, headers and the
// open message leave the browser (screen and memory), which says why in plain words; the card back, the browser
// offers Reconnect, which reconnects the account and brings the mail back.
func TestCardRemovalHidesMail(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 3, "Sent": 2}}
			_, mw, cards := newTestMain(t, lang, testStore(t), m)
			v := mw.accounts
			v.list.Select(0)
			test.Tap(button(t, mw.win.Canvas(), words.T(lang, "accounts.open", nil)))
			bw := v.browsers["alice"]
			waitUI(t, "headers", func() bool { return bw != nil && len(bw.b.headers) == 3 && !bw.b.progress.Visible() })
			bw.b.table.Select(widget.TableCellID{Row: 0, Col: 2})
			waitUI(t, "message", func() bool { return bw.b.reader.msg != nil })
			c := bw.win.Canvas()
			private := []string{"Archives", "Projects", "Message 3", "Sender 3", "Dupont-3", "report-3.pdf"}
			shown := shownText(c)
			for _, p := range private {
				if !strings.Contains(shown, p) {
					t.Fatalf("before removal the browser does not show %q: the check below would prove nothing", p)
				}
			}

			m.mu.Lock()
			m.folderErr = &session.CardError{Err: session.ErrCardAbsent}
			m.mu.Unlock()
			cards.emit(session.Event{Kind: session.CardRemoved, Reader: "Reader 0"})
			waitUI(t, "card needed", func() bool { return v.status["alice"].state == stateCardNeeded })
			shown = shownText(c)
			for _, p := range private {
				if strings.Contains(shown, p) {
					t.Errorf("after removal the browser still shows %q", p)
				}
			}
			if len(bw.b.folders)+len(bw.b.children)+len(bw.b.headers) != 0 || bw.b.selected != "" || bw.b.reader.msg != nil {
				t.Errorf("the browser still holds mail: %d folders, %d headers, selected %q, message %v",
					len(bw.b.folders), len(bw.b.headers), bw.b.selected, bw.b.reader.msg != nil)
			}
			wantShown(t, c, words.T(lang, "folders.hidden", nil), words.Message(lang, diagnosis.CardAbsent))
			if bw.b.reconnectB.Visible() {
				t.Error("Reconnect offered while the card is out")
			}

			m.mu.Lock()
			m.folderErr = nil
			m.mu.Unlock()
			folders := m.called("folders")
			cards.emit(session.Event{Kind: session.CardInserted, Reader: "Reader 0"})
			waitUI(t, "reconnect offer in the browser", func() bool { return bw.b.reconnectB.Visible() })
			wantShown(t, c, words.T(lang, "folders.card_back", nil))
			test.Tap(bw.b.reconnectB)
			waitUI(t, "mail back", func() bool { return len(bw.b.headers) == 3 && !bw.b.progress.Visible() })
			if v.status["alice"].state != stateConnected || v.reconBar.Visible() || bw.b.reconnectB.Visible() {
				t.Errorf("after Reconnect: status %+v, offers still shown %v %v", v.status["alice"], v.reconBar.Visible(),
					bw.b.reconnectB.Visible())
			}
			// One reconnection of the account, then the browser's own reload: two folder listings, no more.
			if got := m.called("folders") - folders; got != 2 {
				t.Errorf("%d folder listings after Reconnect, want 2", got)
			}
			wantShown(t, c, "Archives", "Message 3")
		})
	}
}

// sizeText speaks each language.
func TestSizeText(t *testing.T) {
	cases := []struct {
		n      int64
		en, fr string
	}{
		{0, "0 bytes", "0 octets"}, {999, "999 bytes", "999 octets"}, {1000, "1 KB", "1 Ko"},
		{123456, "123.5 KB", "123,5 Ko"}, {1_400_000, "1.4 MB", "1,4 Mo"}, {25_000_000, "25 MB", "25 Mo"},
	}
	for _, c := range cases {
		if en, fr := sizeText(words.English, c.n), sizeText(words.French, c.n); en != c.en || fr != c.fr {
			t.Errorf("%d: %q %q, want %q %q", c.n, en, fr, c.en, c.fr)
		}
	}
}
