// Package gui is CardMail's desktop app (Fyne). It is the only package that imports fyne.io.
//
// It depends on narrow interfaces it declares itself (CardService, ...), fed by the domain packages in production and
// by fakes in tests. Domain events arrive on other goroutines; every widget change they cause goes through fyne.Do.
package gui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/assets"
	"github.com/cardmail/cardmail/words"
)

// AppID is the application identifier (also in FyneApp.toml).
const AppID = "fr.cardmail.desktop"

// DemoControls lets the demo insert, remove and swap its virtual card from the window.
type DemoControls interface {
	Insert(card int) error // 0: Alice's card, 1: Bruno's card
	Remove() error
}

// Options configures the app.
type Options struct {
	Cards CardService
	Lang  words.Lang
	Demo  DemoControls // nil outside the demo
	// PIN, when set, gets the main window so that the session manager's PIN prompts appear over it.
	PIN *PINPrompter
}

// Run opens the main window and blocks until it is closed.
func Run(opt Options) {
	a := app.NewWithID(AppID)
	a.SetIcon(fyne.NewStaticResource("icon.svg", assets.IconSVG))
	w := NewMainWindow(a, opt)
	w.ShowAndRun()
}

// NewMainWindow builds the main window in app a and starts its live updates; tests call it with a test app.
func NewMainWindow(a fyne.App, opt Options) fyne.Window {
	w := a.NewWindow(words.T(opt.Lang, "app.title", nil))
	if opt.PIN != nil {
		opt.PIN.Window, opt.PIN.Lang = w, opt.Lang
	}
	cards := newCardsView(opt.Cards, opt.Lang)
	unsubscribe := opt.Cards.Subscribe(cards.onEvent)
	w.SetOnClosed(unsubscribe)
	content := cards.content()
	if opt.Demo != nil {
		content = container.NewBorder(nil, demoBar(opt.Demo, opt.Lang, cards), nil, nil, content)
	}
	w.SetContent(content)
	w.Resize(fyne.NewSize(900, 560))
	cards.refresh()
	return w
}

// demoBar has buttons that move the demo's virtual card; they run off the UI goroutine (the card talks TCP).
func demoBar(d DemoControls, lang words.Lang, cards *cardsView) fyne.CanvasObject {
	run := func(fn func() error) {
		go func() {
			if err := fn(); err != nil {
				fyne.Do(func() { cards.showBanner(err.Error()) })
			}
		}()
	}
	return container.NewHBox(
		widget.NewLabel(words.T(lang, "demo.title", nil)),
		widget.NewButton(words.T(lang, "demo.insert_alice", nil), func() { run(func() error { return d.Insert(0) }) }),
		widget.NewButton(words.T(lang, "demo.insert_bruno", nil), func() { run(func() error { return d.Insert(1) }) }),
		widget.NewButton(words.T(lang, "demo.remove", nil), func() { run(d.Remove) }),
	)
}
