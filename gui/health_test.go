package gui

import (
	"crypto/x509"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// healthNow is the fixed clock of the health tests.
var healthNow = time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)

// healthCards is fakeCards that also says which PKCS#11 module it read the cards with.
type healthCards struct {
	*fakeCards
	module token.ModuleInfo
}

func (h *healthCards) ModuleInfo() (token.ModuleInfo, bool) { return h.module, h.module.Path != "" }

var openSC023 = token.ModuleInfo{Path: "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", Manufacturer: "OpenSC Project",
	Description: "OpenSC smartcard framework", Version: "0.23", CryptokiVersion: "2.20"}

// soonCard is Dr Alice Martin's card: certificate ending 12 days (and 2 hours) after healthNow, one PIN try left.
func soonCard(t *testing.T) session.CardCert {
	c := testCert(t, "Dr Alice Martin", healthNow.Add(12*24*time.Hour+2*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	c.TokenLabel, c.TokenSerial = "Dr Alice Martin", "0001"
	c.Token = token.TokenInfo{Label: "Dr Alice Martin", Serial: "0001", LoginRequired: true, UserPINFinalTry: true}
	return c
}

// healthText is the text of the health display, paragraph by paragraph.
func healthText(h *healthView) []string {
	var out []string
	for _, o := range h.box.Objects {
		if rt, ok := o.(*widget.RichText); ok {
			var b strings.Builder
			for i, s := range rt.Segments {
				if i > 1 {
					b.WriteString(" ")
				}
				b.WriteString(s.Textual())
			}
			out = append(out, strings.TrimSpace(b.String()))
		}
	}
	return out
}

func TestCardsHealth(t *testing.T) {
	mk := func(cn string, end time.Time, ti token.TokenInfo, reader string) session.CardCert {
		c := testCert(t, cn, end, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
		c.Token, c.TokenSerial, c.Reader = ti, ti.Serial, reader
		return c
	}
	day := 24 * time.Hour
	for _, lang := range words.Langs {
		tests := []struct {
			name  string
			certs []session.CardCert
			want  []healthLine // of the first card
		}{
			{"far", []session.CardCert{mk("A", healthNow.Add(400*day), token.TokenInfo{Label: "A"}, "R0")},
				[]healthLine{{words.T(lang, "health.expiry.ok", map[string]any{"Date": "2028-04-04"}), widget.MediumImportance},
					{words.T(lang, "health.pin.ok", nil), widget.MediumImportance}}},
			{"31 days: no warning yet", []session.CardCert{mk("A", healthNow.Add(31*day+time.Hour), token.TokenInfo{Label: "A"}, "R0")},
				[]healthLine{{words.T(lang, "health.expiry.ok", map[string]any{"Date": "2027-04-01"}), widget.MediumImportance},
					{words.T(lang, "health.pin.ok", nil), widget.MediumImportance}}},
			{"30 days: warning", []session.CardCert{mk("A", healthNow.Add(30*day+time.Hour), token.TokenInfo{Label: "A", UserPINCountLow: true}, "R0")},
				[]healthLine{{words.T(lang, "health.expiry.soon", map[string]any{"Days": 30, "Date": "2027-03-31"}), widget.WarningImportance},
					{words.T(lang, "health.pin.count_low", nil), widget.WarningImportance}}},
			{"today", []session.CardCert{mk("A", healthNow.Add(3*time.Hour), token.TokenInfo{Label: "A", UserPINFinalTry: true}, "R0")},
				[]healthLine{{words.T(lang, "health.expiry.today", map[string]any{"Date": "2027-03-01"}), widget.WarningImportance},
					{words.T(lang, "health.pin.final_try", nil), widget.WarningImportance}}},
			{"expired, locked", []session.CardCert{mk("A", healthNow.Add(-time.Hour), token.TokenInfo{Label: "A", UserPINLocked: true, UserPINFinalTry: true}, "R0")},
				[]healthLine{{words.T(lang, "health.expiry.expired", map[string]any{"Date": "2027-03-01"}), widget.DangerImportance},
					{words.T(lang, "health.pin.locked", nil), widget.DangerImportance}}},
			{"earliest certificate with a key", []session.CardCert{
				mk("sig", healthNow.Add(200*day), token.TokenInfo{Label: "A", Serial: "1"}, "R0"),
				mk("auth", healthNow.Add(20*day+time.Hour), token.TokenInfo{Label: "A", Serial: "1"}, "R0")},
				[]healthLine{{words.T(lang, "health.expiry.soon", map[string]any{"Days": 20, "Date": "2027-03-21"}), widget.WarningImportance},
					{words.T(lang, "health.pin.ok", nil), widget.MediumImportance}}},
		}
		for _, tt := range tests {
			t.Run(string(lang)+"/"+tt.name, func(t *testing.T) {
				got := cardsHealth(lang, tt.certs, healthNow)
				if len(got) != 1 || got[0].title != "A — R0" || len(got[0].lines) != len(tt.want) {
					t.Fatalf("%+v", got)
				}
				for i, w := range tt.want {
					if got[0].lines[i] != w {
						t.Errorf("line %d: %+v, want %+v", i, got[0].lines[i], w)
					}
				}
			})
		}
	}
	// Two cards in two readers: two paragraphs, in listing order.
	two := cardsHealth(words.English, []session.CardCert{
		mk("A", healthNow.Add(400*day), token.TokenInfo{Label: "A", Serial: "1"}, "R0"),
		mk("B", healthNow.Add(400*day), token.TokenInfo{Label: "B", Serial: "2"}, "R1")}, healthNow)
	if len(two) != 2 || two[0].title != "A — R0" || two[1].title != "B — R1" {
		t.Fatalf("two cards: %+v", two)
	}
}

// TestHealthInMainWindow: the main window shows the card health in both languages, with the module found, and
// follows a card event (a refused PIN locks the card: the display says so without a restart).
func TestHealthInMainWindow(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			t.Setenv("CARDMAIL_LANG", "")
			a := newSerialApp(t)
			card := soonCard(t)
			cards := &healthCards{fakeCards: fixedCards(t), module: openSC023}
			cards.certs = []session.CardCert{card}
			mw := newMainWindow(a, Options{Cards: cards, Lang: lang, Store: testStore(t), Mail: &acctMail{}})
			mw.cards.health.now = func() time.Time { return healthNow }
			mw.cards.refresh()
			want := []string{
				"Dr Alice Martin — Reader 0 " + words.T(lang, "health.expiry.soon", map[string]any{"Days": 12, "Date": "2027-03-13"}) +
					" " + words.T(lang, "health.pin.final_try", nil),
				words.T(lang, "health.module", map[string]any{"Description": "OpenSC smartcard framework", "Version": "0.23",
					"Manufacturer": "OpenSC Project", "Path": openSC023.Path}),
			}
			waitUI(t, "health", func() bool { return strings.Join(healthText(mw.cards.health), "\n") == strings.Join(want, "\n") })

			locked := card
			locked.Token.UserPINLocked = true
			cards.mu.Lock()
			cards.certs = []session.CardCert{locked}
			subs := cards.subs
			cards.mu.Unlock()
			for _, fn := range subs {
				fn(session.Event{Kind: session.PINRefused, Reader: "Reader 0"})
			}
			waitUI(t, "locked", func() bool {
				txt := healthText(mw.cards.health)
				return len(txt) == 2 && strings.HasSuffix(txt[0], words.T(lang, "health.pin.locked", nil))
			})
		})
	}
}

func TestCacheWarningInMainWindow(t *testing.T) {
	for _, lang := range words.Langs {
		t.Setenv("CARDMAIL_LANG", "")
		a := newSerialApp(t)
		mw := newMainWindow(a, Options{Cards: fixedCards(t), Lang: lang, CacheErr: errors.New("no HOME")})
		if !shows(mw.win.Canvas(), words.T(lang, "cache.none", nil)) {
			t.Errorf("%s: the window does not say there is no cache", lang)
		}
		mw = newMainWindow(a, Options{Cards: fixedCards(t), Lang: lang})
		if shows(mw.win.Canvas(), words.T(lang, "cache.none", nil)) {
			t.Errorf("%s: cache warning without an error", lang)
		}
	}
}

// TestScreenshotsCardHealth renders the main window, in English and in French, with a card whose certificate expires
// in 12 days and that has one PIN try left (software painter, default theme). With CARDMAIL_SCREENSHOTS=dir
// (scripts/screenshots.sh) the PNGs are written there as headless-main-health-<lang>.png; otherwise into a
// temporary directory.
func TestScreenshotsCardHealth(t *testing.T) {
	dir := os.Getenv("CARDMAIL_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CARDMAIL_LANG", "")
	for _, lang := range words.Langs {
		a := newSerialApp(t)
		a.Settings().SetTheme(theme.DefaultTheme())
		cards := &healthCards{fakeCards: fixedCards(t), module: openSC023}
		cards.certs = []session.CardCert{soonCard(t)}
		mw := newMainWindow(a, Options{Cards: cards, Lang: lang, Store: testStore(t), Mail: &acctMail{}})
		mw.cards.health.now = func() time.Time { return healthNow }
		mw.cards.refresh()
		waitUI(t, "health", func() bool { return len(healthText(mw.cards.health)) == 2 && mw.accounts.list.Length() == 3 })
		mw.accounts.setStatus("alice", accountStatus{state: stateConnected})
		mw.win.Resize(fyne.NewSize(900, 640))
		img := mw.win.Canvas().Capture()
		if colours(img) < 8 {
			t.Fatalf("%s: the capture is blank", lang)
		}
		path := filepath.Join(dir, "headless-main-health-"+string(lang)+".png")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}

// A window left open counts the days down without any card event: the health display is recomputed every
// healthRefresh (an hour; shortened here).
func TestHealthCountsDownWithoutEvents(t *testing.T) {
	t.Setenv("CARDMAIL_LANG", "")
	old := healthRefresh
	healthRefresh = 20 * time.Millisecond
	t.Cleanup(func() { healthRefresh = old })
	a := newSerialApp(t)
	cards := &healthCards{fakeCards: fixedCards(t), module: openSC023}
	cards.certs = []session.CardCert{soonCard(t)}
	mw := newMainWindow(a, Options{Cards: cards, Lang: words.English, Store: testStore(t), Mail: &acctMail{}})
	var mu sync.Mutex
	now := healthNow
	mw.cards.health.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	mw.cards.refresh()
	days := func(n int) string {
		return words.T(words.English, "health.expiry.soon", map[string]any{"Days": n, "Date": "2027-03-13"})
	}
	waitUI(t, "12 days", func() bool { return strings.Contains(strings.Join(healthText(mw.cards.health), "\n"), days(12)) })
	mu.Lock()
	now = now.Add(24 * time.Hour) // a day passes, no card event
	mu.Unlock()
	waitUI(t, "11 days", func() bool { return strings.Contains(strings.Join(healthText(mw.cards.health), "\n"), days(11)) })
}
