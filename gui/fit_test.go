package gui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// clipped lists what does not fit on c as it is laid out now: a widget narrower than its minimum width (its text
// or its button would be cut), an object that sticks out past the right edge of what holds it (cut by the window,
// a list row, a dialog), and a scroll container that would scroll sideways (a toolbar that scrolls). Text that is
// meant to be cut (a label with an ellipsis) has a small minimum width and passes.
func clipped(c fyne.Canvas) []string {
	var out []string
	var visit func(o fyne.CanvasObject, origin fyne.Position, right float32, path string)
	visit = func(o fyne.CanvasObject, origin fyne.Position, right float32, path string) {
		if o == nil || !o.Visible() {
			return
		}
		pos := origin.Add(o.Position())
		end := pos.X + o.Size().Width
		name := describe(o)
		if name != "" {
			path += " > " + name
		}
		if isLeaf(o) {
			if end > right+1 {
				out = append(out, fmt.Sprintf("%s ends at x=%.0f, past the edge of what holds it at x=%.0f", path, end, right))
			}
			if o.Size().Width+1 < o.MinSize().Width {
				out = append(out, fmt.Sprintf("%s is %.0f wide but needs %.0f", path, o.Size().Width, o.MinSize().Width))
			}
			return
		}
		if s, ok := o.(*container.Scroll); ok && s.Direction != container.ScrollVerticalOnly && s.Direction != container.ScrollNone &&
			s.Content.MinSize().Width > s.Size().Width+1 {
			out = append(out, fmt.Sprintf("%s scrolls sideways: its content needs %.0f, it has %.0f", path,
				s.Content.MinSize().Width, s.Size().Width))
		}
		right = min(right, end)
		switch x := o.(type) {
		case *fyne.Container:
			for i, k := range x.Objects {
				if i == 4 && fmt.Sprintf("%T", x.Layout) == "*dialog.dialogLayout" {
					continue // Fyne's dialog title: drawn from its text, its label is never sized (Fyne 2.8)
				}
				visit(k, pos, right, path)
			}
		case *widget.Table:
			// The message table scrolls sideways by design when its columns are wider than the pane; its cells
			// truncate their text with an ellipsis.
		case fyne.Widget:
			for _, k := range test.WidgetRenderer(x).Objects() {
				visit(k, pos, right, path)
			}
		}
	}
	roots := append([]fyne.CanvasObject{c.Content()}, c.Overlays().List()...)
	for _, r := range roots {
		if r == nil {
			continue
		}
		layoutAll(r)
		visit(r, fyne.Position{}, c.Size().Width, "")
	}
	return out
}

// layoutAll lays o out again from the top down, as the desktop driver does on its next frame after a widget was
// shown or hidden (the test canvas has no frames).
func layoutAll(o fyne.CanvasObject) {
	if o == nil || !o.Visible() {
		return
	}
	switch x := o.(type) {
	case *fyne.Container:
		if x.Layout != nil {
			x.Layout.Layout(x.Objects, x.Size())
		}
		for _, k := range x.Objects {
			layoutAll(k)
		}
	case fyne.Widget:
		r := test.WidgetRenderer(x)
		r.Layout(x.Size())
		for _, k := range r.Objects() {
			layoutAll(k)
		}
	}
}

// isLeaf: the widgets whose minimum size is the room their text needs.
func isLeaf(o fyne.CanvasObject) bool {
	switch o.(type) {
	case *widget.Label, *widget.Button, *keyButton, *widget.Check, *keyCheck, *widget.Select, *keySelect,
		*widget.Entry, *keyEntry, *widget.RichText, *widget.Hyperlink:
		return true
	}
	return false
}

// describe names o in a clipping report: its type and its text when it has one.
func describe(o fyne.CanvasObject) string {
	text := ""
	switch x := o.(type) {
	case *widget.Label:
		text = x.Text
	case *widget.Button:
		text = x.Text
	case *keyButton:
		text = x.Text
	case *widget.Check:
		text = x.Text
	case *keyCheck:
		text = x.Text
	case *widget.Select:
		text = x.Selected
	case *widget.RichText:
		text = x.String()
	case *fyne.Container, *widget.Table:
		return fmt.Sprintf("%T", o)
	default:
		if _, ok := o.(fyne.Widget); !ok {
			return ""
		}
		return fmt.Sprintf("%T", o)
	}
	if len(text) > 40 {
		text = text[:40] + "…"
	}
	return fmt.Sprintf("%T %q", o, strings.ReplaceAll(text, "\n", " "))
}

// longReader is how a very common reader is named on Linux (80 bytes, issue 9).
const longReader = "HID Global OMNIKEY 3x21 Smart Card Reader [OMNIKEY 3x21 Smart Card Reader] 00 00"

// wantFits fails when something on c is cut, and logs the content's minimum width against the window's.
func wantFits(t *testing.T, view string, c fyne.Canvas) {
	t.Helper()
	size := c.Size()
	if c.Content() != nil {
		min := c.Content().MinSize()
		t.Logf("%s: minimum width %.0f of %.0f", view, min.Width, size.Width)
		if min.Width > size.Width {
			t.Errorf("%s needs %.0f px, the default window has %.0f", view, min.Width, size.Width)
		}
	}
	for _, o := range c.Overlays().List() {
		t.Logf("%s: dialog minimum width %.0f of %.0f", view, o.MinSize().Width, size.Width)
		if o.MinSize().Width > size.Width {
			t.Errorf("%s: a dialog needs %.0f px, the window has %.0f", view, o.MinSize().Width, size.Width)
		}
	}
	for _, problem := range clipped(c) {
		t.Errorf("%s: %s", view, problem)
	}
}

// Issue 13 item 8: at the default window size, in French and in English, no view cuts a text or a button and no
// button row scrolls: the main window (readers with 80-byte names, accounts in every state, the reconnect offer,
// the Bridge button, the demo bar), the folder browser with a message open, each page of the wizard, the diagnostics, the certificate
// picker, the PIN window, the settings and about dialogs.
func TestViewsFitDefaultSize(t *testing.T) {
	old := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = old })
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			t.Setenv("CARDMAIL_LANG", "")
			a := newSerialApp(t)
			cards := fixedCards(t)
			cards.readers = []reader.Reader{{Name: longReader, CardPresent: true}, {Name: longReader + " 01 00"},
				{Name: "Virtual PCD 00 00"}}
			cards.certs = append(cards.certs, testCert(t, "Dr Alice Martin (ancienne carte)",
				time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC), nil))
			m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 120}}
			mw := newMainWindow(a, Options{Cards: cards, Lang: lang, Store: testStore(t), Mail: m, Demo: demoControls{},
				Bridges: newFakeBridges()})
			waitUI(t, "main window", func() bool {
				return mw.accounts.list.Length() == 3 && mw.cards.certList.Length() == 2 && mw.cards.readerList.Length() == 3
			})
			mw.accounts.setStatus("alice", accountStatus{state: stateCardNeeded})
			mw.accounts.setStatus("hospital", accountStatus{state: stateFailed, code: diagnosis.ClientCertCANotAccepted})
			mw.accounts.reconBar.Show()
			mw.cards.showBanner(words.T(lang, "banner.card_removed", nil))
			mw.accounts.list.Select(0)
			if mw.win.Canvas().Size() != mainWindowSize {
				t.Fatalf("main window %v, want the default %v", mw.win.Canvas().Size(), mainWindowSize)
			}
			wantFits(t, "main window", mw.win.Canvas())

			// Folder browser with a message open: long subject and recipients, two attachments.
			long := &longMessages{acctMail: m}
			fw, fb := openBrowser(a, lang, long, testProfile(t, "alice", "alice.martin@cardmail.test"), nil, nil)
			waitUI(t, "headers", func() bool { return len(fb.headers) == PageSize && !fb.progress.Visible() })
			fb.table.Select(widget.TableCellID{Row: 0, Col: 0})
			waitUI(t, "message", func() bool { return fb.reader.msg != nil })
			wantFits(t, "folder browser", fw.Canvas())
			if w := columnWidths[0] + columnWidths[1] + columnWidths[2] + 2*theme.Padding(); w > fb.table.Size().Width {
				t.Errorf("the message columns need %.0f px, the list has %.0f: it scrolls sideways", w, fb.table.Size().Width)
			}
			fb.cardGone()
			wantFits(t, "folder browser without the card", fw.Canvas())

			// The wizard on the main window, every page, with its messages shown.
			z := newWizard(mw.win, lang, WizardDeps{Store: testStore(t), Mail: &fakeMail{check: func(_ context.Context,
				_ *profile.Profile, _ string, progress func(diagnosis.Step)) *diagnosis.Report {
				rep := fullReport(lang)
				for _, s := range rep.Steps {
					progress(s)
				}
				return rep
			}, discover: func(context.Context, string) (*autoconfig.Result, error) {
				return &autoconfig.Result{Domain: "sante.example", Source: autoconfig.SourceSRV, Target: "sante.example",
					IMAP: []autoconfig.Server{{Server: profile.Server{Host: "imap.hebergeur-de-messagerie-securisee.example",
						Port: 993, Security: profile.Implicit}, OutsideDomain: true}}}, nil
			}}, Certs: func(context.Context) ([]session.CardCert, error) { return cards.certs, nil }}, nil, nil)
			z.show()
			test.Type(z.address.entry, "dr.alice.martin-dupont@")
			wantFits(t, "wizard: address", mw.win.Canvas())
			wantDialogWithin(t, "wizard: address", mw.win.Canvas(), 720)
			test.Type(z.address.entry, "sante.example")
			test.Tap(z.next)
			z.provider.list.SetSelectedIndex(slices.Index(z.provider.choices, choiceAuto))
			waitUI(t, "discovery", func() bool { return !z.provider.discover.busy() })
			wantFits(t, "wizard: provider (SRV outside the domain)", mw.win.Canvas())
			wantDialogWithin(t, "wizard: provider (SRV outside the domain)", mw.win.Canvas(), 720)
			z.provider.list.SetSelectedIndex(0)
			wantFits(t, "wizard: provider (health messaging)", mw.win.Canvas())
			wantDialogWithin(t, "wizard: provider (health messaging)", mw.win.Canvas(), 720)
			test.Tap(z.next)
			z.servers.srv[1].port.SetText("x")
			wantFits(t, "wizard: servers", mw.win.Canvas())
			wantDialogWithin(t, "wizard: servers", mw.win.Canvas(), 720)
			z.servers.srv[1].port.SetText("587")
			test.Tap(z.next)
			waitUI(t, "certificates", func() bool { return !z.cert.load.busy() })
			wantFits(t, "wizard: certificate", mw.win.Canvas())
			wantDialogWithin(t, "wizard: certificate", mw.win.Canvas(), 720)
			test.Tap(z.next)
			waitUI(t, "test", func() bool { return !z.check.run.busy() })
			wantFits(t, "wizard: test", mw.win.Canvas())
			wantDialogWithin(t, "wizard: test", mw.win.Canvas(), 720)
			test.Tap(z.next)
			wantFits(t, "wizard: save", mw.win.Canvas())
			wantDialogWithin(t, "wizard: save", mw.win.Canvas(), 720)
			z.close()

			// Diagnostics, certificate picker, settings, about over the main window.
			dv := newDiagView(mw.win, lang, fullReport(lang))
			dv.show()
			wantFits(t, "diagnostics", mw.win.Canvas())
			dv.dlg.Hide()
			p := newCertPicker(mw.win, lang, cards.certs, "", func(session.CardCert) {})
			p.dlg.Show()
			wantFits(t, "certificate picker", mw.win.Canvas())
			p.dlg.Hide()
			showSettings(mw.win, a, lang, func(words.Lang) {})
			wantFits(t, "settings", mw.win.Canvas())
			mw.win.Canvas().Overlays().Top().Hide()
			ShowAbout(mw.win, lang)
			wantFits(t, "about", mw.win.Canvas())

			// The PIN window, on the last try.
			pw := a.NewWindow("PIN")
			pw.Resize(pinWindowSize)
			d := showPINDialog(pw, lang, session.PINRequest{Reader: longReader, TokenLabel: "Dr Alice Martin-Dupont (CPS)",
				TriesLeft: 1, FinalTry: true}, func(pinResult) {})
			wantFits(t, "PIN window", pw.Canvas())
			d.cancel()
		})
	}
}

// wantDialogWithin fails when the top dialog on c needs more than width px (the width its view asks for).
func wantDialogWithin(t *testing.T, view string, c fyne.Canvas, width float32) {
	t.Helper()
	if top := c.Overlays().Top(); top == nil {
		t.Errorf("%s: no dialog", view)
	} else if w := top.MinSize().Width; w > width {
		t.Errorf("%s: the dialog needs %.0f px, more than its %.0f", view, w, width)
	}
}

// demoControls is a DemoControls that does nothing.
type demoControls struct{}

func (demoControls) Insert(int) error { return nil }
func (demoControls) Remove() error    { return nil }

// longMessages gives every message a long subject, many recipients and two attachments with long names.
type longMessages struct{ *acctMail }

func (l *longMessages) Message(ctx context.Context, p *profile.Profile, ref mail.MessageRef) (*mail.Message, error) {
	m, err := l.acctMail.Message(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	m.Subject = "Résultats d'analyses biologiques de Mme Dupont-Lefebvre (prélèvement du 28 février, laboratoire central)"
	m.To = []string{"Dr Alice Martin <alice.martin@cardmail.test>", "Secrétariat médical <secretariat@cardmail.test>",
		"Dr Bruno Petit <bruno.petit@cardmail.test>"}
	m.Attachments = append(m.Attachments, mail.Attachment{Part: []int{3},
		Name: "compte-rendu-echographie-abdominale-mme-dupont-lefebvre-2026-02-28-version-definitive.pdf",
		Type: "application/pdf", Size: 4_200_000})
	m.Truncated = true
	return m, nil
}
