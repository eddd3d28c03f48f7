package gui

import (
	"context"
	"crypto/x509"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// TestScreenshots renders the screens that are hard to reach by clicks in the real app (the wizard's steps, the
// picker, the folder browser with a full mailbox) with the software painter and the default theme, and checks that
// each image shows something. With CARDMAIL_SCREENSHOTS=dir (scripts/screenshots.sh) the PNGs are written there as
// "headless-*.png"; otherwise into a temporary directory. The screens are in French unless CARDMAIL_LANG says
// otherwise.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("CARDMAIL_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// French first (the app's main users); CARDMAIL_LANG=en gives the English set.
	lang := words.French
	if os.Getenv("CARDMAIL_LANG") != "" {
		lang = words.Detect()
	}
	a := newSerialApp(t)
	a.Settings().SetTheme(theme.DefaultTheme())
	save := func(name string, c fyne.Canvas) {
		t.Helper()
		img := c.Capture()
		if colours(img) < 8 {
			t.Fatalf("%s: the capture is blank", name)
		}
		f, err := os.Create(filepath.Join(dir, "headless-"+name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
	}

	// Main window with accounts in three states.
	m := &acctMail{folders: testFolders(), headers: map[string]int{"INBOX": 120, "Sent": 2}}
	cards := fixedCards(t)
	mw := newMainWindow(a, Options{Cards: cards, Lang: lang, Store: testStore(t), Mail: m})
	waitUI(t, "accounts", func() bool { return mw.accounts.list.Length() == 3 && mw.cards.certList.Length() == 1 })
	mw.accounts.setStatus("alice", accountStatus{state: stateConnected})
	mw.accounts.setStatus("hospital", accountStatus{state: stateFailed, code: diagnosis.ServerCertUntrusted})
	mw.win.Resize(fyne.NewSize(900, 640))
	save("main-window", mw.win.Canvas())

	// Folder browser with a full INBOX.
	old := time.Local
	time.Local = time.UTC
	defer func() { time.Local = old }()
	fw, fb := openBrowser(a, lang, m, testProfile(t, "alice", "alice.martin@cardmail.test"), nil, nil)
	waitUI(t, "headers", func() bool { return shows(fw.Canvas(), "Message 120") })
	save("folder-browser", fw.Canvas())
	fb.table.Select(widget.TableCellID{Row: 0, Col: 0})
	waitUI(t, "message", func() bool { return fb.reader.msg != nil })
	save("message", fw.Canvas())

	// Certificate picker and PIN dialog.
	w := a.NewWindow("CardMail")
	w.Resize(fyne.NewSize(800, 560))
	certs := []session.CardCert{
		testCert(t, "Dr Alice Martin", time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
		testCert(t, "Old card", time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
	}
	p := newCertPicker(w, lang, certs, "", func(session.CardCert) {})
	p.dlg.Show()
	save("picker", w.Canvas())
	p.dlg.Hide()
	d := showPINDialog(w, lang, session.PINRequest{Reader: "Virtual PCD 00 00", TokenLabel: "Dr Alice Martin", TriesLeft: 3},
		func(pinResult) {})
	save("pin-dialog", w.Canvas())
	d.cancel()

	// Wizard steps, editing Alice's account so that every page has values.
	ww := a.NewWindow("CardMail")
	ww.Resize(fyne.NewSize(900, 640))
	z := newWizard(ww, lang, WizardDeps{Store: testStore(t), Mail: m, Certs: func(context.Context) ([]session.CardCert, error) {
		return certs, nil
	}}, testProfile(t, "alice", "alice.martin@cardmail.test"), nil)
	z.show()
	for i := 0; i < pageCount; i++ {
		z.showPage(i)
		waitUI(t, "wizard page", func() bool { return !z.cert.load.busy() && !z.check.run.busy() })
		save("wizard-"+string(rune('1'+i))+"-"+pageKeys[i], ww.Canvas())
	}

	// A failed diagnosis.
	dw := a.NewWindow("CardMail")
	dw.Resize(fyne.NewSize(900, 640))
	ShowDiagnostics(dw, lang, &diagnosis.Report{Code: diagnosis.ServerCertUntrusted,
		Message: words.Message(lang, diagnosis.ServerCertUntrusted), Remedy: words.Remedy(lang, diagnosis.ServerCertUntrusted),
		Steps: []diagnosis.Step{{Name: diagnosis.StepDNS, OK: true, Ms: 2}, {Name: diagnosis.StepConnect, OK: true, Ms: 3},
			{Name: diagnosis.StepTLS, OK: false, Ms: 41, Detail: "x509: certificate signed by unknown authority"}}})
	save("diagnosis-failed", dw.Canvas())
}

// colours counts the distinct colours of img, up to 64.
func colours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, al := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, al}] = true
			if len(seen) >= 64 {
				return len(seen)
			}
		}
	}
	return len(seen)
}
