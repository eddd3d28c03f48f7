// Package gui is CardMail's desktop app (Fyne). It is the only package that imports fyne.io.
//
// It depends on narrow interfaces it declares itself (CardService, ...), fed by the domain packages in production and
// by fakes in tests. Domain events arrive on other goroutines; every widget change they cause goes through fyne.Do.
package gui

import (
	"runtime/debug"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/assets"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// AppID is the application identifier (also in FyneApp.toml).
const AppID = "fr.cardmail.desktop"

// Default window sizes. Every view fits them in French and in English without cutting a text or a button
// (TestViewsFitDefaultSize).
var (
	mainWindowSize = fyne.NewSize(900, 640)
	browserSize    = fyne.NewSize(900, 560)
	pinWindowSize  = fyne.NewSize(500, 340)
)

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
	// PIN, when set, is told the app, main window and language, so that the session manager's PIN prompts appear
	// in front of the person.
	PIN *PINPrompter
	// Store is the saved accounts and Mail runs their operations; the accounts view is shown when both are set.
	Store AccountStore
	Mail  MailService
	// CacheErr, when set, is why CardMail has no per-user cache (accounts.DefaultDirs): the window says it in plain
	// words.
	CacheErr error
	// Bridges runs the accounts' local bridges; the accounts view offers a Bridge panel when it is set.
	Bridges BridgeService
}

// Run opens the main window and blocks until it is closed.
func Run(opt Options) {
	a := app.NewWithID(AppID)
	a.SetIcon(fyne.NewStaticResource("cardmail.png", assets.IconPNG))
	w := NewMainWindow(a, opt)
	// Start-up (fonts, first layout, the first card listing) leaves garbage the idle app will not reuse soon: once
	// the window is up, collect it and give the pages back to the system.
	time.AfterFunc(time.Second, debug.FreeOSMemory)
	w.ShowAndRun()
}

// NewMainWindow builds the main window in app a and starts its live updates; tests call it with a test app.
// opt.Lang "" means the saved choice or the system language (see Language).
func NewMainWindow(a fyne.App, opt Options) fyne.Window { return newMainWindow(a, opt).win }

func newMainWindow(a fyne.App, opt Options) *mainWindow {
	if opt.Lang == "" {
		opt.Lang = Language(a)
	}
	mw := &mainWindow{app: a, opt: opt, win: a.NewWindow(words.T(opt.Lang, "app.title", nil))}
	mw.win.SetOnClosed(func() { mw.unsubscribe() })
	mw.build()
	mw.win.Resize(mainWindowSize)
	return mw
}

// mainWindow owns the main window's views; UI goroutine only.
type mainWindow struct {
	app      fyne.App
	win      fyne.Window
	opt      Options
	cards    *cardsView
	accounts *accountsView // nil without Options.Store and Options.Mail
	unsub    func()
}

// unsubscribe detaches the current views from card events and drops their pending background results (window
// closed, or views rebuilt).
func (mw *mainWindow) unsubscribe() {
	if mw.unsub != nil {
		mw.unsub()
		mw.unsub = nil
	}
	if mw.cards != nil {
		mw.cards.end()
	}
	if mw.accounts != nil {
		mw.accounts.end()
	}
}

// build (re)creates the content in the current language and subscribes it to card events.
func (mw *mainWindow) build() {
	lang := mw.opt.Lang
	mw.win.SetTitle(words.T(lang, "app.title", nil))
	if mw.opt.PIN != nil {
		mw.opt.PIN.App, mw.opt.PIN.Window, mw.opt.PIN.Lang = mw.app, mw.win, lang
	}
	mw.unsubscribe()
	mw.cards = newCardsView(mw.opt.Cards, lang)
	old := mw.accounts
	mw.accounts = nil
	if mw.opt.Store != nil && mw.opt.Mail != nil {
		mw.accounts = newAccountsView(mw.app, mw.win, lang, mw.opt.Store, mw.opt.Mail, mw.opt.Cards)
		mw.accounts.adopt(old)
		if mw.opt.Bridges != nil {
			mw.accounts.bridges = newBridgeHub(mw.app, lang, mw.opt.Bridges)
		}
	}
	cards, accounts := mw.cards, mw.accounts // the subscriber runs on the manager's goroutine: no mw fields there
	mw.unsub = mw.opt.Cards.Subscribe(func(ev session.Event) {
		cards.onEvent(ev)
		if accounts != nil {
			accounts.onEvent(ev)
		}
	})
	toolbar := widget.NewToolbar(widget.NewToolbarSpacer(),
		widget.NewToolbarAction(theme.SettingsIcon(), func() {
			showSettings(mw.win, mw.app, lang, func(l words.Lang) {
				mw.opt.Lang = l
				mw.build()
			})
		}),
		widget.NewToolbarAction(theme.InfoIcon(), func() { ShowAbout(mw.win, lang) }))
	var main fyne.CanvasObject = mw.cards.content()
	if mw.accounts != nil {
		split := container.NewVSplit(mw.accounts.content(), main)
		split.Offset = 0.55
		main = split
	}
	var top fyne.CanvasObject = toolbar
	if w := cacheWarning(lang, mw.opt.CacheErr); w != nil {
		top = container.NewVBox(toolbar, w)
	}
	content := container.NewBorder(top, nil, nil, nil, main)
	if mw.opt.Demo != nil {
		content = container.NewBorder(nil, demoBar(mw.opt.Demo, lang, mw.cards), nil, nil, content)
	}
	mw.win.SetContent(content)
	mw.cards.refresh()
	if mw.accounts != nil {
		mw.accounts.reload()
	}
}

// demoBar has buttons that move the demo's virtual card; they run off the UI goroutine (the card talks TCP).
func demoBar(d DemoControls, lang words.Lang, cards *cardsView) fyne.CanvasObject {
	run := func(fn func() error) {
		go func() {
			if err := fn(); err != nil {
				cards.do(func() { cards.showBanner(err.Error()) })
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
