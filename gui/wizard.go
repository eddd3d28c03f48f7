package gui

import (
	"cmp"
	"context"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// WizardDeps is what the connection wizard needs from the domain.
type WizardDeps struct {
	Store AccountStore
	Mail  MailService
	// Certs lists the certificates of the cards present (session.ErrCardAbsent, wrapped, when there is no card).
	Certs func(ctx context.Context) ([]session.CardCert, error)
}

// Time limits of the wizard's background work (the domain calls have their own, shorter, step timeouts).
const (
	wizardDiscoverTimeout = 30 * time.Second
	wizardCertsTimeout    = 30 * time.Second
	wizardTestTimeout     = 3 * time.Minute // includes the PIN prompt
	wizardSaveTimeout     = 10 * time.Second
)

// The wizard's pages, in order.
const (
	pageAddress = iota
	pageProvider
	pageServers
	pageCert
	pageTest
	pageSave
	pageCount
)

// pageKeys name the pages in words ("wizard.<key>.title") and in golden files.
var pageKeys = [pageCount]string{"address", "provider", "servers", "cert", "test", "save"}

// page is one step of the wizard. Its methods run on the UI goroutine.
type page interface {
	// build makes the page's widgets, once, when the wizard is created.
	build() fyne.CanvasObject
	// enter runs every time the page becomes the current one: it starts the work the page does on arrival.
	enter()
	// valid reports whether the person may go forward from the page, and shows the messages of its fields.
	valid() bool
	// first is the widget that gets the focus on the page (Next when it is nil or disabled).
	first() fyne.Focusable
}

// draft is the account the wizard's pages describe: plain values that the pages' fields keep up to date (a field
// that does not parse, such as a port "99x", leaves its zero value there). The live test checks candidate() and
// Save stores it.
type draft struct {
	profile.Profile        // Name is the save page's name, trimmed ("" before the person or the page gives one)
	choice          string // provider page: a preset id, choiceAuto or choiceManual ("" before a choice)
	oldName         string // the name of the profile being edited, "" for a new one
	// guessed are the host names a preset guessed from the address (IMAP, SMTP; "" for none): shown as guesses to
	// check for as long as the servers keep them.
	guessed [2]string
}

// guesses returns the host names of the draft that are still guesses.
func (d *draft) guesses() []string {
	var out []string
	for i, s := range []profile.Server{d.IMAP, d.SMTP} {
		if d.guessed[i] != "" && strings.EqualFold(s.Host, d.guessed[i]) {
			out = append(out, s.Host)
		}
	}
	return out
}

// candidate is the profile the draft describes, named even before the save page has a valid name (the live test
// needs a valid profile): the name typed, else the edited profile's, else one made from the address.
func (d *draft) candidate() *profile.Profile {
	p := d.Profile.Clone()
	p.Version = profile.Version
	name := d.Name
	if !profile.ValidName(name) {
		name = ""
	}
	p.Name = cmp.Or(name, d.oldName, profile.SuggestName(d.Address), "account")
	return p
}

// ShowWizard shows the connection wizard over w: e-mail address, provider (built-in preset, autoconfiguration or
// manual), servers, card certificate, live test, then the profile name and the save. onSaved (may be nil) gets the
// saved profile on the UI goroutine. existing, when not nil, is the profile being edited: every page starts with its
// values, and saving it under another name replaces the old one (Store.Rename); a new account never overwrites
// another (Store.Create). Background work (autoconfiguration, card reading, the test, saving) never blocks the UI
// goroutine and stops when the wizard is closed.
func ShowWizard(w fyne.Window, lang words.Lang, deps WizardDeps, existing *profile.Profile, onSaved func(*profile.Profile)) {
	newWizard(w, lang, deps, existing, onSaved).show()
}

// wizard is the frame of one connection wizard on screen: the dialog, the heading, Back / Next / Cancel, the
// keyboard, and the pages in turn. Its fields are touched on the UI goroutine only; background work goes through
// the pages' jobs.
type wizard struct {
	life
	win     fyne.Window
	lang    words.Lang
	deps    WizardDeps
	onSaved func(*profile.Profile)
	keys    *keys
	d       draft
	filling bool // set while the code fills fields, so that their change handlers do not react as to the person

	address  *addressPage
	provider *providerPage
	servers  *serversPage
	cert     *certPage
	check    *checkPage
	save     *savePage
	pages    [pageCount]page
	views    [pageCount]fyne.CanvasObject
	page     int // the current page

	dlg     *dialog.CustomDialog
	body    *fyne.Container
	heading *widget.Label
	back    *keyButton
	next    *keyButton
	cancel  *keyButton
	closed  bool
	prevKey func(*fyne.KeyEvent)
}

func newWizard(w fyne.Window, lang words.Lang, deps WizardDeps, existing *profile.Profile, onSaved func(*profile.Profile)) *wizard {
	z := &wizard{win: w, lang: lang, deps: deps, onSaved: onSaved, keys: &keys{}}
	z.keys.enter = z.enterPressed
	z.keys.escape = z.close
	t := z.t

	z.back = newKeyButton(z.keys, t("wizard.back", nil), theme.NavigateBackIcon(), z.goBack)
	z.next = newKeyButton(z.keys, t("wizard.next", nil), theme.NavigateNextIcon(), z.goNext)
	z.next.Importance = widget.HighImportance
	z.next.IconPlacement = widget.ButtonIconTrailingText
	z.cancel = newKeyButton(z.keys, t("pin.cancel", nil), theme.CancelIcon(), z.close)
	z.heading = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})

	z.address = &addressPage{z: z}
	z.provider = &providerPage{z: z}
	z.servers = &serversPage{z: z}
	z.cert = &certPage{z: z}
	z.check = &checkPage{z: z}
	z.save = &savePage{z: z}
	z.pages = [pageCount]page{z.address, z.provider, z.servers, z.cert, z.check, z.save}
	for i, p := range z.pages {
		z.views[i] = p.build()
	}
	z.prefill(existing)

	z.body = container.NewStack()
	content := container.NewBorder(container.NewVBox(z.heading, widget.NewSeparator()), nil, nil, nil, z.body)
	title := t("wizard.title_new", nil)
	if existing != nil {
		title = t("wizard.title_edit", map[string]any{"Name": existing.Name})
	}
	z.dlg = dialog.NewCustomWithoutButtons(title, content, w)
	z.dlg.SetButtons([]fyne.CanvasObject{z.cancel, z.back, z.next})
	z.dlg.SetOnClosed(z.cleanup)
	z.dlg.Resize(dialogSize(w, 720, 560))
	z.showPage(pageAddress)
	return z
}

func (z *wizard) t(key string, data map[string]any) string { return words.T(z.lang, key, data) }

// newJob returns a background job of the wizard: its results stop when the wizard closes.
func (z *wizard) newJob(timeout time.Duration, onBusy func(bool)) *job {
	return &job{life: &z.life, timeout: timeout, onBusy: onBusy}
}

// prefill shows the edited profile on every page, or the empty state of a new one.
func (z *wizard) prefill(e *profile.Profile) {
	if e == nil {
		z.servers.showCAFiles()
		z.cert.showChosen()
		return
	}
	e = e.Clone()
	z.d.oldName = e.Name
	z.d.PKCS11Module = e.PKCS11Module
	z.fill(func() {
		z.address.entry.SetText(e.Address)
		z.save.name.SetText(e.Name)
	})
	z.save.nameTyped = true
	z.provider.selectChoice(choiceManual)
	z.provider.info.SetText(z.t("wizard.provider.edit_info", nil))
	z.servers.fill(e.IMAP, e.SMTP, e.Login, e.TLSPolicy)
	z.servers.setCAFiles(e.CAFiles)
	z.cert.choose(e.CertSHA256)
}

// fill runs fn, which sets fields from code: their change handlers record the values in the draft but do not react
// as to the person.
func (z *wizard) fill(fn func()) {
	z.filling = true
	defer func() { z.filling = false }()
	fn()
}

// show puts the wizard on screen with the focus in its first field; Enter and Escape work even with nothing focused.
func (z *wizard) show() {
	c := z.win.Canvas()
	z.prevKey = c.OnTypedKey()
	c.SetOnTypedKey(func(ev *fyne.KeyEvent) {
		if !z.keys.handle(ev) && z.prevKey != nil {
			z.prevKey(ev)
		}
	})
	z.dlg.Show()
	z.focusFirst()
}

// focusFirst focuses the first field of the current page, or Next when that field is disabled.
func (z *wizard) focusFirst() {
	if z.closed {
		return
	}
	var f fyne.Focusable = z.next
	if first := z.pages[z.page].first(); first != nil {
		if d, ok := first.(fyne.Disableable); !ok || !d.Disabled() {
			f = first
		}
	}
	z.win.Canvas().Focus(f)
}

// close cancels whatever runs in the background and closes the wizard without saving.
func (z *wizard) close() {
	if !z.closed {
		z.dlg.Hide() // calls cleanup
	}
}

func (z *wizard) cleanup() {
	if z.closed {
		return
	}
	z.closed = true
	z.end()
	for _, j := range []*job{z.provider.discover, z.cert.load, z.check.run} {
		j.drop()
	}
	z.win.Canvas().SetOnTypedKey(z.prevKey)
}

// enterPressed runs the default button: Next, or Save on the last page.
func (z *wizard) enterPressed() {
	if !z.next.Disabled() {
		z.goNext()
	}
}

func (z *wizard) goBack() {
	if z.page > 0 && !z.save.job.busy() {
		z.showPage(z.page - 1)
	}
}

func (z *wizard) goNext() {
	if z.next.Disabled() || z.closed {
		return
	}
	if z.page == pageSave {
		z.save.submit()
		return
	}
	z.showPage(z.page + 1)
}

// showPage makes page i current and lets it start the work it does on arrival.
func (z *wizard) showPage(i int) {
	z.page = i
	z.heading.SetText(z.t("wizard.step", map[string]any{"N": i + 1, "Total": pageCount,
		"Title": z.t("wizard."+pageKeys[i]+".title", nil)}))
	z.body.Objects = []fyne.CanvasObject{z.views[i]}
	z.body.Refresh()
	if i == pageSave {
		z.next.SetText(z.t("wizard.save", nil))
		z.next.SetIcon(theme.DocumentSaveIcon())
	} else {
		z.next.SetText(z.t("wizard.next", nil))
		z.next.SetIcon(theme.NavigateNextIcon())
	}
	z.pages[i].enter()
	z.update()
	z.focusFirst()
}

// update enables Back and Next for the current page.
func (z *wizard) update() {
	if z.page == 0 || z.save.job.busy() {
		z.back.Disable()
	} else {
		z.back.Enable()
	}
	if z.pages[z.page].valid() {
		z.next.Enable()
	} else {
		z.next.Disable()
	}
	relayout(z.views[z.page])
}

// relayout lays o out again from the top down: showing or hiding a widget changes its container's minimum size,
// which Fyne only applies when that container is refreshed.
func relayout(o fyne.CanvasObject) {
	switch x := o.(type) {
	case *fyne.Container:
		x.Refresh()
		for _, c := range x.Objects {
			relayout(c)
		}
	case *container.Scroll:
		relayout(x.Content)
		x.Refresh()
	case *widget.Form:
		x.Refresh()
		for _, it := range x.Items {
			relayout(it.Widget)
		}
	case *StepLadder:
		relayout(x.box)
	}
}

// setReason shows the words of a profile.ValidationError reason under a field; "" hides it.
func (z *wizard) setReason(l *widget.Label, reason string) {
	if reason == "" {
		l.Hide()
		return
	}
	l.SetText(z.t("wizard.reason."+reason, nil))
	l.Show()
}

// validationText is a *profile.ValidationError in words: the field, then the reason.
func (z *wizard) validationText(ve *profile.ValidationError) string {
	return ve.Field + ": " + z.t("wizard.reason."+ve.Reason, nil)
}

func errorLabel() *widget.Label {
	l := widget.NewLabel("")
	l.Importance = widget.DangerImportance
	l.Wrapping = fyne.TextWrapWord
	l.Hide()
	return l
}

func wrapped(text string) *widget.Label {
	l := widget.NewLabel(text)
	l.Wrapping = fyne.TextWrapWord
	return l
}
