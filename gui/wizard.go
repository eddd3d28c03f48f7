package gui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
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

var pageKeys = [pageCount]string{"address", "provider", "servers", "cert", "test", "save"}

// Provider choices besides the built-in presets.
const (
	choiceAuto   = "auto"
	choiceManual = "manual"
)

var (
	securities = []profile.Security{profile.Implicit, profile.StartTLS}
	logins     = []profile.Login{profile.LoginAuto, profile.LoginExternal, profile.LoginLogin, profile.LoginPlain}
	policies   = []profile.TLSPolicy{profile.PolicyDefault, profile.PolicyMSSante}
)

// standardPort is the port of a protocol ("imap", "smtp") in a security mode (RFC 8314, RFC 6409).
func standardPort(protocol string, s profile.Security) int {
	switch {
	case protocol == diagnosis.ProtocolIMAP && s == profile.StartTLS:
		return 143
	case protocol == diagnosis.ProtocolIMAP:
		return 993
	case s == profile.StartTLS:
		return 587
	}
	return 465
}

// ShowWizard shows the connection wizard over w: e-mail address, provider (built-in preset, autoconfiguration or
// manual), servers, card certificate, live test, then the profile name and Store.Save. onSaved (may be nil) gets the
// saved profile on the UI goroutine. existing, when not nil, is the profile being edited: every page starts with
// its values, and saving it under another name deletes the old one. Background work (autoconfiguration, card
// reading, the test, saving) never blocks the UI goroutine and stops when the wizard is closed.
func ShowWizard(w fyne.Window, lang words.Lang, deps WizardDeps, existing *profile.Profile, onSaved func(*profile.Profile)) {
	newWizard(w, lang, deps, existing, onSaved).show()
}

// wizard is one connection wizard on screen. Its fields are touched on the UI goroutine only; background
// goroutines hand their results over with fyne.Do.
type wizard struct {
	life
	win      fyne.Window
	lang     words.Lang
	deps     WizardDeps
	existing *profile.Profile
	onSaved  func(*profile.Profile)
	keys     *keys

	dlg     *dialog.CustomDialog
	page    int
	pages   [pageCount]fyne.CanvasObject
	first   [pageCount]fyne.Focusable
	body    *fyne.Container
	heading *widget.Label
	back    *keyButton
	next    *keyButton
	cancel  *keyButton
	closed  bool
	prevKey func(*fyne.KeyEvent)
	filling bool // set while the code fills fields, so that their change handlers do not react as to the person

	// page 1
	address    *keyEntry
	addressErr *widget.Label
	// page 2
	provider       *keySelect
	choices        []string // provider choice ids, parallel to provider.Options
	choice         string
	providerInfo   *widget.Label
	discoverBar    *widget.ProgressBarInfinite
	discoverStop   *keyButton
	discoverSeq    int // increases with every start or abandon, so that a stale result is ignored
	discoverCancel context.CancelFunc
	// page 3
	srv        [2]serverFields // imap, smtp
	login      *keySelect
	policy     *keySelect
	caFiles    []string
	caBox      *fyne.Container
	caAdd      *keyButton
	serversErr *widget.Label
	// page 4
	certs      []session.CardCert
	certChosen string // hex SHA-256, "" for none
	certLabel  *widget.Label
	certStatus *widget.Label
	certBar    *widget.ProgressBarInfinite
	certPick   *keyButton
	certRetry  *keyButton
	certCancel context.CancelFunc
	certBusy   bool
	certSeq    int
	// page 5
	ladder     *StepLadder
	testMsg    *widget.RichText
	testRemedy *widget.Label
	testRun    *keyButton
	testStop   *keyButton
	testDetail *keyButton
	testCancel context.CancelFunc
	testBusy   bool
	testSeq    int
	testOK     bool
	testedKey  string // the candidate profile the last completed test was for
	testReport *diagnosis.Report
	// page 6
	name      *keyEntry
	nameErr   *widget.Label
	summary   *widget.Label
	testWarn  *widget.Label
	anyway    *keyCheck
	saveErr   *widget.Label
	saving    bool
	nameTyped bool // the person edited the name: stop suggesting one

	bg sync.WaitGroup // background goroutines; tests wait on it
	// hook, when set (tests only), runs first on every background goroutine: tests hold the work back until the
	// UI call that started it has returned, as the real driver's fyne.Do queue would.
	hook func()
}

// serverFields are the widgets of one server (IMAP or SMTP).
type serverFields struct {
	protocol string
	host     *keyEntry
	hostErr  *widget.Label
	port     *keyEntry
	portErr  *widget.Label
	security *keySelect
}

func newWizard(w fyne.Window, lang words.Lang, deps WizardDeps, existing *profile.Profile, onSaved func(*profile.Profile)) *wizard {
	z := &wizard{win: w, lang: lang, deps: deps, onSaved: onSaved, keys: &keys{}}
	if existing != nil {
		z.existing = existing.Clone()
	}
	z.keys.enter = z.enterPressed
	z.keys.escape = z.close
	t := z.t

	z.back = newKeyButton(z.keys, t("wizard.back", nil), theme.NavigateBackIcon(), z.goBack)
	z.next = newKeyButton(z.keys, t("wizard.next", nil), theme.NavigateNextIcon(), z.goNext)
	z.next.Importance = widget.HighImportance
	z.next.IconPlacement = widget.ButtonIconTrailingText
	z.cancel = newKeyButton(z.keys, t("pin.cancel", nil), theme.CancelIcon(), z.close)
	z.heading = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})

	z.pages[pageAddress] = z.buildAddress()
	z.pages[pageProvider] = z.buildProvider()
	z.pages[pageServers] = z.buildServers()
	z.pages[pageCert] = z.buildCert()
	z.pages[pageTest] = z.buildTest()
	z.pages[pageSave] = z.buildSave()
	z.prefill()

	z.body = container.NewStack()
	content := container.NewBorder(container.NewVBox(z.heading, widget.NewSeparator()), nil, nil, nil, z.body)
	title := t("wizard.title_new", nil)
	if z.existing != nil {
		title = t("wizard.title_edit", map[string]any{"Name": z.existing.Name})
	}
	z.dlg = dialog.NewCustomWithoutButtons(title, content, w)
	z.dlg.SetButtons([]fyne.CanvasObject{z.cancel, z.back, z.next})
	z.dlg.SetOnClosed(z.cleanup)
	z.dlg.Resize(dialogSize(w, 720, 560))
	z.showPage(pageAddress)
	return z
}

func (z *wizard) t(key string, data map[string]any) string { return words.T(z.lang, key, data) }

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
	if first := z.first[z.page]; first != nil {
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
	for _, c := range []context.CancelFunc{z.discoverCancel, z.certCancel, z.testCancel} {
		if c != nil {
			c()
		}
	}
	z.win.Canvas().SetOnTypedKey(z.prevKey)
}

// goBackground runs fn on a new goroutine with a context that the wizard's closing cancels through cancel.
func (z *wizard) goBackground(timeout time.Duration, fn func(ctx context.Context)) context.CancelFunc {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	z.bg.Add(1)
	hook := z.hook
	go func() {
		defer z.bg.Done()
		defer cancel()
		if hook != nil {
			hook()
		}
		fn(ctx)
	}()
	return cancel
}

// enterPressed runs the default button: Next, or Save on the last page.
func (z *wizard) enterPressed() {
	if !z.next.Disabled() {
		z.goNext()
	}
}

func (z *wizard) goBack() {
	if z.page > 0 && !z.saving {
		z.showPage(z.page - 1)
	}
}

func (z *wizard) goNext() {
	if z.next.Disabled() || z.closed {
		return
	}
	if z.page == pageSave {
		z.save()
		return
	}
	z.showPage(z.page + 1)
}

// showPage makes page i current and starts the work that page does on entry.
func (z *wizard) showPage(i int) {
	z.page = i
	z.heading.SetText(z.t("wizard.step", map[string]any{"N": i + 1, "Total": pageCount,
		"Title": z.t("wizard."+pageKeys[i]+".title", nil)}))
	z.body.Objects = []fyne.CanvasObject{z.pages[i]}
	z.body.Refresh()
	if i == pageSave {
		z.next.SetText(z.t("wizard.save", nil))
		z.next.SetIcon(theme.DocumentSaveIcon())
	} else {
		z.next.SetText(z.t("wizard.next", nil))
		z.next.SetIcon(theme.NavigateNextIcon())
	}
	switch i {
	case pageCert:
		if !z.certBusy {
			z.loadCerts()
		}
	case pageTest:
		if !z.testBusy && z.testedKey != z.candidateKey() {
			z.runTest()
		}
	case pageSave:
		z.enterSave()
	}
	z.update()
	z.focusFirst()
}

// update enables Back and Next for the current page.
func (z *wizard) update() {
	if z.page == 0 || z.saving {
		z.back.Disable()
	} else {
		z.back.Enable()
	}
	if z.pageValid(z.page) {
		z.next.Enable()
	} else {
		z.next.Disable()
	}
	relayout(z.pages[z.page])
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

// pageValid reports whether the person may leave page i forward, and shows the field messages of that page.
func (z *wizard) pageValid(i int) bool {
	switch i {
	case pageAddress:
		return z.checkAddress()
	case pageProvider:
		return z.choice != "" && z.discoverCancel == nil
	case pageServers:
		return z.checkServers()
	case pageCert:
		return z.certChosen != "" || z.loginMode() == profile.LoginLogin || z.loginMode() == profile.LoginPlain
	case pageTest:
		return !z.testBusy
	case pageSave:
		return z.checkName() && (z.testOK || z.anyway.Checked) && !z.saving
	}
	return false
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

// ---- page 1: address

func (z *wizard) buildAddress() fyne.CanvasObject {
	z.address = newKeyEntry(z.keys)
	z.address.SetPlaceHolder(z.t("wizard.address.placeholder", nil))
	z.address.OnChanged = func(string) { z.update() }
	z.addressErr = errorLabel()
	z.first[pageAddress] = z.address
	return container.NewVBox(wrapped(z.t("wizard.address.intro", nil)),
		widget.NewForm(widget.NewFormItem(z.t("wizard.address.label", nil), container.NewVBox(z.address, z.addressErr))))
}

func (z *wizard) addressText() string { return strings.TrimSpace(z.address.Text) }

func (z *wizard) checkAddress() bool {
	reason := ""
	switch a := z.addressText(); {
	case a == "":
		reason = profile.ReasonMissing
	default:
		if _, _, ok := profile.SplitAddress(a); !ok {
			reason = profile.ReasonBadAddress
		}
	}
	if reason == profile.ReasonMissing {
		z.setReason(z.addressErr, "") // an empty field is not an error yet
	} else {
		z.setReason(z.addressErr, reason)
	}
	return reason == ""
}

// ---- page 2: provider

func (z *wizard) buildProvider() fyne.CanvasObject {
	var labels []string
	for _, p := range profile.Presets() {
		z.choices = append(z.choices, string(p.ID))
		labels = append(labels, z.t("profile.preset."+string(p.ID), nil))
	}
	z.choices = append(z.choices, choiceAuto, choiceManual)
	labels = append(labels, z.t("wizard.provider.auto", nil), z.t("wizard.provider.manual", nil))
	z.provider = newKeySelect(z.keys, z.t("wizard.choose", nil), labels, func(string) { z.providerChanged() })
	z.providerInfo = wrapped("")
	z.discoverBar = widget.NewProgressBarInfinite()
	z.discoverBar.Stop()
	z.discoverBar.Hide()
	z.discoverStop = newKeyButton(z.keys, z.t("wizard.stop", nil), theme.CancelIcon(), z.stopDiscover)
	z.discoverStop.Hide()
	z.first[pageProvider] = z.provider
	return container.NewVBox(wrapped(z.t("wizard.provider.intro", nil)),
		widget.NewForm(widget.NewFormItem(z.t("wizard.provider.label", nil), z.provider)),
		z.discoverBar, z.discoverStop, z.providerInfo)
}

func (z *wizard) providerChanged() {
	i := z.provider.SelectedIndex()
	if i < 0 || z.filling {
		return
	}
	z.choice = z.choices[i]
	z.abandonDiscover()
	switch z.choice {
	case choiceAuto:
		z.startDiscover()
	case choiceManual:
		z.providerInfo.SetText(z.t("wizard.provider.manual_info", nil))
		z.applyManual()
	default:
		if p, ok := profile.PresetByID(profile.PresetID(z.choice)); ok {
			z.providerInfo.SetText(z.t("wizard.provider.info."+z.choice, nil))
			z.applyPreset(p)
		}
	}
	z.update()
}

// selectChoice shows choice in the provider list without reacting to it.
func (z *wizard) selectChoice(choice string) {
	z.choice = choice
	z.filling = true
	z.provider.SetSelectedIndex(slices.Index(z.choices, choice))
	z.filling = false
}

// applyPreset fills the server page from a preset, with the host names guessed from the address.
func (z *wizard) applyPreset(p profile.Preset) {
	pr, err := profile.FromPreset(p, z.addressText())
	if err != nil { // the address page is valid before this page, so this is a preset bug
		pr = &profile.Profile{IMAP: p.IMAP, SMTP: p.SMTP, Login: p.Login, TLSPolicy: p.TLSPolicy}
	}
	z.fillServers(pr.IMAP, pr.SMTP, pr.Login, pr.TLSPolicy)
}

// applyManual keeps the generic preset's ports and modes and empties the host names for the person to type.
func (z *wizard) applyManual() {
	p, _ := profile.PresetByID(profile.PresetGeneric)
	imap, smtp := p.IMAP, p.SMTP
	imap.Host, smtp.Host = "", ""
	z.fillServers(imap, smtp, p.Login, p.TLSPolicy)
}

func (z *wizard) startDiscover() {
	addr := z.addressText()
	z.discoverSeq++
	seq := z.discoverSeq
	z.providerInfo.SetText(z.t("wizard.discover.running", map[string]any{"Domain": domainOf(addr)}))
	z.discoverBar.Show()
	z.discoverBar.Start()
	z.discoverStop.Show()
	z.discoverCancel = z.goBackground(wizardDiscoverTimeout, func(ctx context.Context) {
		res, err := z.deps.Mail.Discover(ctx, addr)
		stopped := errors.Is(ctx.Err(), context.Canceled)
		z.do(func() {
			if seq == z.discoverSeq && !z.closed {
				z.discovered(res, err, stopped)
			}
		})
	})
}

// abandonDiscover cancels a running autoconfiguration whose result is no longer wanted.
func (z *wizard) abandonDiscover() {
	if z.discoverCancel != nil {
		z.discoverCancel()
		z.discoverCancel = nil
		z.discoverSeq++
		z.discoverBar.Stop()
		z.discoverBar.Hide()
		z.discoverStop.Hide()
	}
}

func domainOf(addr string) string {
	_, d, _ := profile.SplitAddress(addr)
	return d
}

func (z *wizard) stopDiscover() {
	if z.discoverCancel != nil {
		z.discoverCancel()
	}
}

// discovered shows what autoconfiguration found (and fills the servers), or why it failed (and falls back to manual).
func (z *wizard) discovered(res *autoconfig.Result, err error, stopped bool) {
	z.discoverCancel = nil
	z.discoverBar.Stop()
	z.discoverBar.Hide()
	z.discoverStop.Hide()
	if err == nil && res != nil && (len(res.IMAP) > 0 || len(res.SMTP) > 0) {
		z.applyDiscovered(res)
	} else {
		key := "wizard.discover.failed"
		switch {
		case stopped:
			key = "wizard.discover.cancelled"
		case errors.Is(err, context.DeadlineExceeded):
			key = "wizard.discover.timeout"
		case errors.Is(err, autoconfig.ErrNotFound), err == nil:
			key = "wizard.discover.not_found"
		}
		z.providerInfo.SetText(z.t(key, map[string]any{"Domain": domainOf(z.addressText())}) + "\n" +
			z.t("wizard.discover.fallback", nil))
		z.selectChoice(choiceManual)
		z.applyManual()
	}
	z.update()
}

func (z *wizard) applyDiscovered(res *autoconfig.Result) {
	generic, _ := profile.PresetByID(profile.PresetGeneric)
	imap, smtp := generic.IMAP, generic.SMTP
	imap.Host, smtp.Host = "", ""
	describe := func(s []autoconfig.Server) string {
		if len(s) == 0 {
			return z.t("wizard.discover.nothing", nil)
		}
		return fmt.Sprintf("%s:%d (%s)", s[0].Host, s[0].Port, z.t("wizard.security."+string(s[0].Security), nil))
	}
	if len(res.IMAP) > 0 {
		imap = profile.Server{Host: res.IMAP[0].Host, Port: res.IMAP[0].Port, Security: profile.Security(res.IMAP[0].Security)}
	}
	if len(res.SMTP) > 0 {
		smtp = profile.Server{Host: res.SMTP[0].Host, Port: res.SMTP[0].Port, Security: profile.Security(res.SMTP[0].Security)}
	}
	z.fillServers(imap, smtp, generic.Login, generic.TLSPolicy)
	z.providerInfo.SetText(z.t("wizard.discover.found", map[string]any{
		"Source": z.t("wizard.source."+string(res.Source), nil), "Target": res.Target,
		"IMAP": describe(res.IMAP), "SMTP": describe(res.SMTP)}))
}

// ---- page 3: servers

func (z *wizard) buildServers() fyne.CanvasObject {
	secLabels := make([]string, len(securities))
	for i, s := range securities {
		secLabels[i] = z.t("wizard.security."+string(s), nil)
	}
	form := widget.NewForm()
	for i, proto := range []string{diagnosis.ProtocolIMAP, diagnosis.ProtocolSMTP} {
		f := &z.srv[i]
		f.protocol = proto
		f.host = newKeyEntry(z.keys)
		f.host.SetPlaceHolder(z.t("wizard.servers.host_placeholder", nil))
		f.host.OnChanged = func(string) { z.update() }
		f.hostErr = errorLabel()
		f.port = newKeyEntry(z.keys)
		f.port.OnChanged = func(string) { z.update() }
		f.portErr = errorLabel()
		f.security = newKeySelect(z.keys, z.t("wizard.choose", nil), secLabels, func(string) {
			if z.filling || f.security.SelectedIndex() < 0 {
				return
			}
			f.port.SetText(strconv.Itoa(standardPort(f.protocol, securities[f.security.SelectedIndex()])))
			z.update()
		})
		form.Append(z.t("wizard.servers."+proto+"_host", nil), container.NewVBox(f.host, f.hostErr))
		form.Append(z.t("wizard.servers.security", nil), f.security)
		form.Append(z.t("wizard.servers.port", nil), container.NewVBox(f.port, f.portErr))
	}
	loginLabels := make([]string, len(logins))
	for i, l := range logins {
		loginLabels[i] = z.t("wizard.login."+string(l), nil)
	}
	z.login = newKeySelect(z.keys, z.t("wizard.choose", nil), loginLabels, func(string) { z.update() })
	policyLabels := make([]string, len(policies))
	for i, p := range policies {
		policyLabels[i] = z.t("wizard.policy."+string(p), nil)
	}
	z.policy = newKeySelect(z.keys, z.t("wizard.choose", nil), policyLabels, func(string) { z.update() })
	z.caBox = container.NewVBox()
	z.caAdd = newKeyButton(z.keys, z.t("wizard.servers.ca_add", nil), theme.ContentAddIcon(), z.chooseCAFile)
	form.Append(z.t("wizard.servers.login", nil), z.login)
	form.Append(z.t("wizard.servers.policy", nil), z.policy)
	form.Append(z.t("wizard.servers.ca_files", nil), container.NewVBox(z.caBox, container.NewHBox(z.caAdd)))
	z.serversErr = errorLabel()
	z.first[pageServers] = z.srv[0].host
	return container.NewVScroll(container.NewVBox(form, z.serversErr))
}

// fillServers shows a server configuration on the servers page.
func (z *wizard) fillServers(imap, smtp profile.Server, login profile.Login, policy profile.TLSPolicy) {
	z.filling = true
	defer func() { z.filling = false }()
	for i, s := range []profile.Server{imap, smtp} {
		f := &z.srv[i]
		f.host.SetText(s.Host)
		if s.Port > 0 {
			f.port.SetText(strconv.Itoa(s.Port))
		} else {
			f.port.SetText("")
		}
		f.security.SetSelectedIndex(slices.Index(securities, s.Security))
	}
	z.login.SetSelectedIndex(slices.Index(logins, login))
	z.policy.SetSelectedIndex(slices.Index(policies, policy))
}

func (z *wizard) loginMode() profile.Login {
	if i := z.login.SelectedIndex(); i >= 0 {
		return logins[i]
	}
	return ""
}

func hostReason(h string) string {
	switch {
	case h == "":
		return profile.ReasonMissing
	case !profile.ValidHost(h):
		return profile.ReasonBadHost
	}
	return ""
}

func portReason(s string) string {
	if s == "" {
		return profile.ReasonMissing
	}
	if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 65535 {
		return profile.ReasonBadPort
	}
	return ""
}

// checkServers shows the reason under each wrong field of the servers page, then checks the whole profile (for
// what has no field of its own, such as the CA file paths).
func (z *wizard) checkServers() bool {
	ok := true
	for i := range z.srv {
		f := &z.srv[i]
		hr := hostReason(strings.TrimSpace(f.host.Text))
		pr := portReason(strings.TrimSpace(f.port.Text))
		z.setReason(f.hostErr, hr)
		z.setReason(f.portErr, pr)
		ok = ok && hr == "" && pr == "" && f.security.SelectedIndex() >= 0
	}
	ok = ok && z.login.SelectedIndex() >= 0 && z.policy.SelectedIndex() >= 0
	z.serversErr.Hide()
	if ok {
		var ve *profile.ValidationError
		if err := z.candidate().Validate(); errors.As(err, &ve) {
			z.serversErr.SetText(ve.Field + ": " + z.t("wizard.reason."+ve.Reason, nil))
			z.serversErr.Show()
			return false
		}
	}
	return ok
}

func (z *wizard) chooseCAFile() {
	d := dialog.NewFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil || rc == nil {
			return
		}
		path := rc.URI().Path()
		_ = rc.Close()
		z.addCAFile(path)
	}, z.win)
	d.Show()
}

// addCAFile adds a CA file path (once) to the list.
func (z *wizard) addCAFile(path string) {
	if path != "" && !slices.Contains(z.caFiles, path) {
		z.caFiles = append(z.caFiles, path)
	}
	z.showCAFiles()
	z.update()
}

func (z *wizard) removeCAFile(path string) {
	z.caFiles = slices.DeleteFunc(z.caFiles, func(p string) bool { return p == path })
	z.showCAFiles()
	z.update()
}

func (z *wizard) showCAFiles() {
	var rows []fyne.CanvasObject
	for _, p := range z.caFiles {
		rm := newKeyButton(z.keys, z.t("wizard.servers.ca_remove", nil), theme.DeleteIcon(), func() { z.removeCAFile(p) })
		rows = append(rows, container.NewBorder(nil, nil, nil, rm, wrapLabel(p)))
	}
	if len(rows) == 0 {
		none := widget.NewLabel(z.t("wizard.servers.ca_none", nil))
		none.Importance = widget.LowImportance
		rows = append(rows, none)
	}
	z.caBox.Objects = rows
	z.caBox.Refresh()
}

// ---- page 4: certificate

func (z *wizard) buildCert() fyne.CanvasObject {
	z.certLabel = wrapped("")
	z.certLabel.TextStyle.Bold = true
	z.certStatus = wrapped("")
	z.certBar = widget.NewProgressBarInfinite()
	z.certBar.Stop()
	z.certBar.Hide()
	z.certPick = newKeyButton(z.keys, z.t("wizard.cert.pick", nil), theme.AccountIcon(), z.pickCert)
	z.certRetry = newKeyButton(z.keys, z.t("wizard.cert.retry", nil), theme.ViewRefreshIcon(), z.loadCerts)
	z.first[pageCert] = z.certPick
	return container.NewVBox(wrapped(z.t("wizard.cert.intro", nil)), z.certBar, z.certStatus, z.certLabel,
		container.NewHBox(z.certPick, z.certRetry))
}

// loadCerts reads the certificates of the present cards in the background and auto-selects the one that fits.
func (z *wizard) loadCerts() {
	if z.certCancel != nil {
		z.certCancel()
	}
	z.certBusy = true
	z.certSeq++
	seq := z.certSeq
	z.certBar.Show()
	z.certBar.Start()
	z.certStatus.SetText(z.t("certs.loading", nil))
	z.certPick.Disable()
	z.certRetry.Disable()
	z.update()
	z.certCancel = z.goBackground(wizardCertsTimeout, func(ctx context.Context) {
		cs, err := z.deps.Certs(ctx)
		z.do(func() {
			if seq == z.certSeq && !z.closed { // else superseded or closed
				z.certsLoaded(cs, err)
			}
		})
	})
}

func (z *wizard) certsLoaded(cs []session.CardCert, err error) {
	z.certBusy, z.certCancel = false, nil
	z.certBar.Stop()
	z.certBar.Hide()
	z.certRetry.Enable()
	z.certs = cs
	switch {
	case errors.Is(err, session.ErrCardAbsent) || (err == nil && len(cs) == 0):
		z.certStatus.SetText(z.t("wizard.cert.no_card", nil))
	case err != nil:
		code := diagnosis.OfCardError(err)
		z.certStatus.SetText(words.Message(z.lang, code) + "\n" + words.Remedy(z.lang, code))
	default:
		z.certStatus.SetText(z.t("wizard.cert.found", map[string]any{"N": len(cs)}))
		z.certPick.Enable()
		if !slices.ContainsFunc(cs, func(c session.CardCert) bool { return c.Fingerprint() == z.certChosen }) {
			if c, ok := AutoPick(cs); ok {
				z.certChosen = c.Fingerprint()
			}
		}
	}
	z.showChosen()
	z.update()
	if z.page == pageCert {
		z.focusFirst()
	}
}

func (z *wizard) pickCert() {
	ShowCertPicker(z.win, z.lang, z.certs, z.certChosen, func(c session.CardCert) {
		z.certChosen = c.Fingerprint()
		z.showChosen()
		z.update()
	})
}

// showChosen describes the chosen certificate (from the present cards when it is there, else by fingerprint).
func (z *wizard) showChosen() {
	if z.certChosen == "" {
		z.certLabel.SetText(z.t("wizard.cert.none_chosen", nil))
		return
	}
	for _, c := range z.certs {
		if c.Fingerprint() == z.certChosen {
			d := token.Describe(&c.Certificate)
			text := z.t("wizard.cert.chosen", map[string]any{"Subject": d.Subject, "Issuer": d.Issuer})
			if len(d.NotAfter) >= 10 {
				text += "\n" + z.t("cert.valid_until", map[string]any{"Date": d.NotAfter[:10]})
			}
			z.certLabel.SetText(text)
			return
		}
	}
	z.certLabel.SetText(z.t("wizard.cert.chosen_absent", map[string]any{"SHA256": z.certChosen[:16] + "…"}))
}

// ---- page 5: live test

func (z *wizard) buildTest() fyne.CanvasObject {
	z.ladder = NewStepLadder(z.lang)
	z.testMsg = widget.NewRichText()
	z.testMsg.Wrapping = fyne.TextWrapWord
	z.testRemedy = wrapped("")
	z.testRemedy.Hide()
	z.testRun = newKeyButton(z.keys, z.t("wizard.test.again", nil), theme.ViewRefreshIcon(), z.runTest)
	z.testStop = newKeyButton(z.keys, z.t("wizard.stop", nil), theme.CancelIcon(), z.stopTest)
	z.testDetail = newKeyButton(z.keys, z.t("picker.details", nil), theme.InfoIcon(), z.showTestDetails)
	z.testDetail.Hide()
	z.first[pageTest] = z.testStop
	return container.NewBorder(nil, container.NewHBox(z.testStop, z.testRun, z.testDetail), nil, nil,
		container.NewVScroll(container.NewVBox(wrapped(z.t("wizard.test.intro", nil)), z.ladder, z.testMsg, z.testRemedy)))
}

// candidateName is the profile name used before the save page has one (tests need a valid profile).
func (z *wizard) candidateName() string {
	if n := strings.TrimSpace(z.name.Text); profile.ValidName(n) {
		return n
	}
	if z.existing != nil {
		return z.existing.Name
	}
	if n := profile.SuggestName(z.addressText()); n != "" {
		return n
	}
	return "account"
}

// candidate is the profile the pages describe now.
func (z *wizard) candidate() *profile.Profile {
	p := &profile.Profile{Version: profile.Version, Name: z.candidateName(), Address: z.addressText(),
		Login: z.loginMode(), CAFiles: slices.Clone(z.caFiles), CertSHA256: z.certChosen}
	if i := z.policy.SelectedIndex(); i >= 0 {
		p.TLSPolicy = policies[i]
	}
	for i, s := range []*profile.Server{&p.IMAP, &p.SMTP} {
		f := &z.srv[i]
		s.Host = strings.TrimSpace(f.host.Text)
		s.Port, _ = strconv.Atoi(strings.TrimSpace(f.port.Text))
		if j := f.security.SelectedIndex(); j >= 0 {
			s.Security = securities[j]
		}
	}
	if z.existing != nil {
		p.PKCS11Module = z.existing.PKCS11Module
	}
	return p
}

// candidateKey identifies the connection settings of the candidate, so that a test is re-run after a change.
func (z *wizard) candidateKey() string {
	p := z.candidate()
	p.Name = ""
	return fmt.Sprintf("%+v", *p)
}

// runTest checks IMAP then SMTP in the background, showing the ladder live; the Stop button cancels it.
func (z *wizard) runTest() {
	if z.testCancel != nil {
		z.testCancel()
	}
	p, key := z.candidate(), z.candidateKey()
	z.testBusy, z.testOK, z.testReport = true, false, nil
	z.testSeq++
	seq := z.testSeq
	current := func() bool { return seq == z.testSeq && !z.closed } // UI goroutine only
	z.ladder.Reset()
	z.testMsg.Segments = []widget.RichTextSegment{&widget.TextSegment{Text: z.t("wizard.test.running", nil)}}
	z.testMsg.Refresh()
	z.testRemedy.Hide()
	z.testDetail.Hide()
	z.testRun.Disable()
	z.testStop.Enable()
	z.update()
	z.testCancel = z.goBackground(wizardTestTimeout, func(ctx context.Context) {
		var last *diagnosis.Report
		for _, proto := range []string{diagnosis.ProtocolIMAP, diagnosis.ProtocolSMTP} {
			z.do(func() {
				if current() {
					z.ladder.AddSection(z.t("diag.protocol."+proto, nil))
					z.ladder.SetRunning(true)
				}
			})
			rep := z.deps.Mail.Check(ctx, p, proto, z.lang, func(s diagnosis.Step) {
				z.do(func() {
					if current() {
						z.ladder.Add(s)
					}
				})
			})
			last = rep
			z.do(func() {
				if current() && rep != nil {
					z.ladder.SetSteps(rep.Steps)
				}
			})
			if rep == nil || !rep.OK || ctx.Err() != nil {
				break
			}
		}
		stopped := errors.Is(ctx.Err(), context.Canceled)
		z.do(func() {
			if current() {
				z.tested(key, last, stopped)
			}
		})
	})
}

func (z *wizard) stopTest() {
	if z.testCancel != nil {
		z.testCancel()
	}
}

// tested shows the outcome of a test: success, the person's stop, or the failure's message and remedy with Details.
func (z *wizard) tested(key string, r *diagnosis.Report, stopped bool) {
	z.testBusy, z.testCancel = false, nil
	z.ladder.SetRunning(false)
	z.testRun.Enable()
	z.testStop.Disable()
	z.testedKey = key
	z.testReport = r
	switch {
	case stopped:
		z.testOK = false
		z.testMsg.Segments = []widget.RichTextSegment{&widget.TextSegment{Style: widget.RichTextStyleStrong,
			Text: z.t("wizard.test.stopped", nil)}}
	case r != nil && r.OK:
		z.testOK = true
		z.testMsg.Segments = []widget.RichTextSegment{&widget.TextSegment{Style: widget.RichTextStyleSubHeading,
			Text: words.Message(z.lang, diagnosis.OK)}}
	default:
		z.testOK = false
		code := diagnosis.Internal
		if r != nil && r.Code != "" {
			code = r.Code
		}
		z.testMsg.Segments = []widget.RichTextSegment{
			&widget.TextSegment{Style: widget.RichTextStyleSubHeading, Text: words.Message(z.lang, code)}}
		z.testRemedy.SetText(words.Remedy(z.lang, code))
		z.testRemedy.Show()
		if r != nil {
			z.testDetail.Show()
		}
	}
	z.testMsg.Refresh()
	z.update()
	if z.page == pageTest {
		if z.testDetail.Visible() {
			z.win.Canvas().Focus(z.testDetail)
		} else {
			z.win.Canvas().Focus(z.next)
		}
	}
}

func (z *wizard) showTestDetails() {
	if z.testReport != nil {
		ShowDiagnostics(z.win, z.lang, z.testReport)
	}
}

// ---- page 6: save

func (z *wizard) buildSave() fyne.CanvasObject {
	z.name = newKeyEntry(z.keys)
	z.name.OnChanged = func(string) {
		if !z.filling {
			z.nameTyped = true
		}
		z.update()
	}
	z.nameErr = errorLabel()
	z.summary = wrapped("")
	z.testWarn = wrapped(z.t("wizard.save.test_failed", nil))
	z.testWarn.Importance = widget.WarningImportance
	z.anyway = newKeyCheck(z.keys, z.t("wizard.save.anyway", nil), func(bool) { z.update() })
	z.saveErr = errorLabel()
	z.first[pageSave] = z.name
	return container.NewVBox(wrapped(z.t("wizard.save.intro", nil)),
		widget.NewForm(widget.NewFormItem(z.t("wizard.save.name", nil), container.NewVBox(z.name, z.nameErr))),
		z.summary, z.testWarn, z.anyway, z.saveErr)
}

// enterSave suggests a name (unless the person typed one) and shows whether "save anyway" is needed.
func (z *wizard) enterSave() {
	if !z.nameTyped && strings.TrimSpace(z.name.Text) == "" {
		z.filling = true
		z.name.SetText(profile.SuggestName(z.addressText()))
		z.filling = false
	}
	p := z.candidate()
	z.summary.SetText(z.t("wizard.save.summary", map[string]any{"Address": p.Address,
		"IMAP": fmt.Sprintf("%s:%d", p.IMAP.Host, p.IMAP.Port), "SMTP": fmt.Sprintf("%s:%d", p.SMTP.Host, p.SMTP.Port)}))
	z.saveErr.Hide()
	if z.testOK && z.testedKey == z.candidateKey() {
		z.testWarn.Hide()
		z.anyway.Hide()
	} else {
		z.testOK = false
		z.testWarn.Show()
		z.anyway.Show()
	}
}

func (z *wizard) checkName() bool {
	n := strings.TrimSpace(z.name.Text)
	switch {
	case n == "":
		z.setReason(z.nameErr, "")
		return false
	case !profile.ValidName(n):
		z.setReason(z.nameErr, profile.ReasonBadName)
		return false
	}
	z.setReason(z.nameErr, "")
	return true
}

// save validates the profile and saves it in the background; the wizard closes and onSaved runs on success.
func (z *wizard) save() {
	p := z.candidate()
	p.Name = strings.TrimSpace(z.name.Text)
	var ve *profile.ValidationError
	if err := p.Validate(); errors.As(err, &ve) {
		z.saveErr.SetText(ve.Field + ": " + z.t("wizard.reason."+ve.Reason, nil))
		z.saveErr.Show()
		return
	}
	z.saving = true
	z.saveErr.Hide()
	z.update()
	var old string
	if z.existing != nil && z.existing.Name != p.Name {
		old = z.existing.Name
	}
	isNew := z.existing == nil
	z.goBackground(wizardSaveTimeout, func(ctx context.Context) {
		var err error
		switch {
		case isNew: // never over another profile (also one whose name differs only in case on Windows/macOS)
			err = z.deps.Store.Create(p)
		case old != "": // replaces the old one; a system preset of that name stays (it is read-only)
			err = z.deps.Store.Rename(old, p)
		default:
			err = z.deps.Store.Save(p)
		}
		z.do(func() { z.saved(p, err) })
	})
}

func (z *wizard) saved(p *profile.Profile, err error) {
	z.saving = false
	if err != nil {
		var ve *profile.ValidationError
		var ee *profile.ExistsError
		if errors.As(err, &ve) {
			z.saveErr.SetText(ve.Field + ": " + z.t("wizard.reason."+ve.Reason, nil))
		} else if errors.As(err, &ee) {
			z.saveErr.SetText(z.t("wizard.save.exists", map[string]any{"Name": ee.Name, "Existing": ee.Existing}))
		} else {
			z.saveErr.SetText(z.t("wizard.save.failed", nil) + "\n" + err.Error())
		}
		z.saveErr.Show()
		z.update()
		return
	}
	z.close()
	if z.onSaved != nil {
		z.onSaved(p)
	}
}

// ---- editing

// prefill shows the edited profile on every page, or the empty state of a new one.
func (z *wizard) prefill() {
	z.showCAFiles()
	e := z.existing
	if e == nil {
		z.showChosen()
		return
	}
	z.filling = true
	z.address.SetText(e.Address)
	z.name.SetText(e.Name)
	z.filling = false
	z.nameTyped = true
	z.selectChoice(choiceManual)
	z.providerInfo.SetText(z.t("wizard.provider.edit_info", nil))
	z.fillServers(e.IMAP, e.SMTP, e.Login, e.TLSPolicy)
	z.caFiles = slices.Clone(e.CAFiles)
	z.showCAFiles()
	z.certChosen = strings.ToLower(e.CertSHA256)
	z.showChosen()
}
