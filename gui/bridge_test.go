package gui

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// fakeBridges is a BridgeService in memory.
type fakeBridges struct {
	mu        sync.Mutex
	setup     bridge.Setup
	running   map[string]bool
	status    bridge.Status
	startErr  error
	starts    []bridge.Settings
	stops     int
	subs      map[int]func(string)
	subSeq    int
	autostart []string
}

func newFakeBridges() *fakeBridges {
	return &fakeBridges{running: map[string]bool{}, subs: map[int]func(string){},
		setup: bridge.Setup{Settings: bridge.DefaultSettings(), Password: "K7QXW2MZ4RUVN3CE6HJP5TBYAL",
			CertFile: "/home/alice/.config/cardmail/bridge/loopback-cert.pem"}}
}

func (f *fakeBridges) BridgeSetup(*profile.Profile) (bridge.Setup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setup, nil
}

func (f *fakeBridges) StartBridge(p *profile.Profile, set bridge.Settings, _ words.Lang) error {
	f.mu.Lock()
	f.starts = append(f.starts, set)
	err := f.startErr
	if err == nil {
		f.running[p.Name] = true
		f.setup.Settings = set
		f.setup.Settings.Enabled = true
	}
	f.mu.Unlock()
	f.notify(p.Name)
	return err
}

func (f *fakeBridges) StopBridge(name string) error {
	f.mu.Lock()
	f.stops++
	delete(f.running, name)
	f.mu.Unlock()
	f.notify(name)
	return nil
}

func (f *fakeBridges) ResetBridgePassword(*profile.Profile, words.Lang) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setup.Password = "NEWPASSWORD4RUVN3CE6HJP5TB"
	return f.setup.Password, nil
}

func (f *fakeBridges) BridgeStatus(name string) (bridge.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.running[name]
}

func (f *fakeBridges) SubscribeBridges(fn func(string)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subSeq++
	id := f.subSeq
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

func (f *fakeBridges) StartEnabledBridges(ps []*profile.Profile, _ words.Lang) map[string]error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ps {
		f.autostart = append(f.autostart, p.Name)
	}
	return nil
}

// notify tells the subscribers, from another goroutine as the real bridges do.
func (f *fakeBridges) notify(name string) {
	f.mu.Lock()
	fns := make([]func(string), 0, len(f.subs))
	for _, fn := range f.subs {
		fns = append(fns, fn)
	}
	f.mu.Unlock()
	go func() {
		for _, fn := range fns {
			fn(name)
		}
	}()
}

func (f *fakeBridges) setStatus(st bridge.Status) {
	f.mu.Lock()
	f.status = st
	f.mu.Unlock()
}

func labelTexts(o fyne.CanvasObject) string {
	var b strings.Builder
	walk(o, func(o fyne.CanvasObject) {
		if l, ok := o.(*widget.Label); ok && l.Visible() {
			b.WriteString(l.Text + "\n")
		}
	})
	return b.String()
}

// openBridgePanel opens the main window with the fake accounts and the fake bridges, selects alice and taps Bridge.
func openBridgePanel(t *testing.T, a fyne.App, lang words.Lang, fb *fakeBridges) (*mainWindow, *bridgePanel) {
	t.Helper()
	mw := newMainWindow(a, Options{Cards: fixedCards(t), Lang: lang, Store: testStore(t), Mail: &acctMail{}, Bridges: fb})
	waitUI(t, "accounts", func() bool { return mw.accounts.list.Length() == 3 })
	mw.accounts.list.Select(0)
	if mw.accounts.bridgeBtn == nil || mw.accounts.bridgeBtn.Disabled() {
		t.Fatal("no enabled Bridge button for the selected account")
	}
	test.Tap(mw.accounts.bridgeBtn)
	bp := mw.accounts.bridges.panels[mw.accounts.entries[0].Name]
	if bp == nil {
		t.Fatal("the Bridge button opened no panel")
	}
	waitUI(t, "the panel to load", func() bool { return bp.password.Text != "" && !bp.enable.Disabled() })
	return mw, bp
}

// TestBridgePanel: the Bridge panel starts and stops the account's bridge with the ports typed in, refuses bad
// ports in words, says when a port is taken, shows and copies the user name and bridge password, follows the
// bridge's events (clients, card, last problem), fills the set-up steps with the account's values, and the bridges
// that were on start with the app.
func TestBridgePanel(t *testing.T) {
	a := newSerialApp(t)
	fb := newFakeBridges()
	mw, bp := openBridgePanel(t, a, words.English, fb)
	usable := 0
	for _, e := range mw.accounts.entries {
		if e.Profile != nil {
			usable++
		}
	}
	if len(fb.autostart) != usable || usable == 0 {
		t.Errorf("autostart asked for %v, want the %d readable accounts", fb.autostart, usable)
	}
	name := mw.accounts.entries[0].Name
	addr := mw.accounts.entries[0].Profile.Address
	if strings.Contains(bp.password.Text, fb.setup.Password) || len([]rune(bp.password.Text)) != len(fb.setup.Password) {
		t.Errorf("password shown as %q before Show", bp.password.Text)
	}
	test.Tap(bp.show)
	if bp.password.Text != fb.setup.Password {
		t.Errorf("Show: %q, want the bridge password", bp.password.Text)
	}
	texts := labelTexts(bp.win.Content())
	for _, want := range []string{addr, "port 1143", "port 1025", "loopback-cert.pem"} {
		if !strings.Contains(texts, want) {
			t.Errorf("panel does not show %q:\n%s", want, texts)
		}
	}

	// Copy buttons.
	var copies []*widget.Button
	walk(bp.win.Content(), func(o fyne.CanvasObject) {
		if b, ok := o.(*widget.Button); ok && b.Text == "Copy" {
			copies = append(copies, b)
		}
	})
	if len(copies) != 2 {
		t.Fatalf("%d Copy buttons, want 2", len(copies))
	}
	test.Tap(copies[0])
	if got := a.Clipboard().Content(); got != addr {
		t.Errorf("user copied as %q", got)
	}
	test.Tap(copies[1])
	if got := a.Clipboard().Content(); got != fb.setup.Password {
		t.Errorf("password copied as %q", got)
	}

	// Bad ports are refused before anything starts.
	bp.imapPort.SetText("99999")
	test.Tap(bp.enable)
	waitUI(t, "the refusal", func() bool { return bp.problem.Visible() })
	if !strings.Contains(bp.problem.Text, "between 1 and 65535") || bp.enable.Checked || len(fb.starts) != 0 {
		t.Errorf("port 99999: %q, checked %v, starts %v", bp.problem.Text, bp.enable.Checked, fb.starts)
	}
	bp.imapPort.SetText("1025")
	test.Tap(bp.enable)
	waitUI(t, "the refusal", func() bool { return strings.Contains(bp.problem.Text, "must differ") })

	// A taken port.
	bp.imapPort.SetText("2143")
	fb.startErr = &bridge.ListenError{Protocol: "imap", Addr: "127.0.0.1:2143",
		Err: fmt.Errorf("%w: %w", bridge.ErrPortInUse, syscall.EADDRINUSE)}
	test.Tap(bp.enable)
	waitUI(t, "the port-in-use problem", func() bool { return strings.Contains(bp.problem.Text, "already used") })
	if !strings.Contains(bp.problem.Text, "127.0.0.1:2143") || bp.enable.Checked {
		t.Errorf("port in use: %q checked %v", bp.problem.Text, bp.enable.Checked)
	}

	// Start, then the bridge's events update the panel.
	fb.startErr = nil
	test.Tap(bp.enable)
	waitUI(t, "running", func() bool { return bp.enable.Checked && strings.Contains(bp.state.Text, "Running") })
	if got := fb.starts[len(fb.starts)-1]; got.IMAP != "127.0.0.1:2143" || got.SMTP != "127.0.0.1:1025" {
		t.Errorf("started with %+v", got)
	}
	if bp.problem.Visible() {
		t.Errorf("a problem is still shown after a successful start: %q", bp.problem.Text)
	}
	fb.setStatus(bridge.Status{Clients: 2, Relayed: 2, Card: bridge.CardAbsent, LastCode: diagnosis.CardAbsent,
		LastTime: time.Date(2026, 5, 4, 9, 30, 0, 0, time.Local)})
	fb.notify(name)
	waitUI(t, "the status", func() bool { return strings.Contains(bp.clients.Text, "2") })
	if !strings.Contains(bp.card.Text, "absent") || !strings.Contains(bp.lastErr.Text, "09:30") ||
		!strings.Contains(bp.lastErr.Text, words.Message(words.English, diagnosis.CardAbsent)) {
		t.Errorf("status shown: %q / %q", bp.card.Text, bp.lastErr.Text)
	}
	bp.fillSteps()
	for _, want := range []string{"port 2143", addr, "STARTTLS", "Normal password"} {
		if !strings.Contains(bp.tbSteps.Text, want) {
			t.Errorf("Thunderbird steps lack %q:\n%s", want, bp.tbSteps.Text)
		}
	}
	if !strings.Contains(bp.olSteps.Text, "port 2143") || !strings.Contains(bp.olSteps.Text, "SPA") {
		t.Errorf("Outlook steps:\n%s", bp.olSteps.Text)
	}

	// Off.
	test.Tap(bp.enable)
	waitUI(t, "stopped", func() bool { return !bp.enable.Checked && strings.Contains(bp.state.Text, "Stopped") })
	if fb.stops != 1 {
		t.Errorf("%d stops", fb.stops)
	}
	bp.win.Close()
	if len(mw.accounts.bridges.panels) != 0 {
		t.Error("the closed panel is still registered")
	}
}

// TestBridgeScreenshots renders the Bridge panel, running with two clients, in English and French, and checks
// every text is in the panel's language. With CARDMAIL_SCREENSHOTS=dir the PNGs are written there as
// headless-bridge-<lang>.png.
func TestBridgeScreenshots(t *testing.T) {
	dir := os.Getenv("CARDMAIL_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, lang := range []words.Lang{words.English, words.French} {
		t.Run(string(lang), func(t *testing.T) {
			a := newSerialApp(t)
			a.Settings().SetTheme(theme.DefaultTheme())
			fb := newFakeBridges()
			fb.running["alice"] = true
			fb.setStatus(bridge.Status{Clients: 2, Relayed: 2, Card: bridge.CardReady, LastCode: diagnosis.CardAbsent,
				LastTime: time.Date(2026, 5, 4, 9, 30, 0, 0, time.Local)})
			_, bp := openBridgePanel(t, a, lang, fb)
			waitUI(t, "running", func() bool { return bp.enable.Checked })
			bp.win.Resize(fyne.NewSize(720, 1420))
			texts := labelTexts(bp.win.Content())
			if lang == words.French && (!strings.Contains(texts, "Passerelle") || strings.Contains(texts, "Bridge on")) {
				t.Errorf("French panel:\n%s", texts)
			}
			img := bp.win.Canvas().Capture()
			if colours(img) < 8 {
				t.Fatal("blank capture")
			}
			f, err := os.Create(filepath.Join(dir, "headless-bridge-"+string(lang)+".png"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := png.Encode(f, img); err != nil {
				t.Fatal(err)
			}
		})
	}
}
