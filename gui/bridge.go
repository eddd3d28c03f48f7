package gui

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// BridgeService runs the local bridges (package bridge) of the accounts; *app.Accounts implements it. Its calls
// may touch files and the network: the GUI makes them off the UI goroutine.
type BridgeService interface {
	BridgeSetup(p *profile.Profile) (bridge.Setup, error)
	StartBridge(p *profile.Profile, set bridge.Settings, lang words.Lang) error
	StopBridge(name string) error
	ResetBridgePassword(p *profile.Profile, lang words.Lang) (string, error)
	BridgeStatus(name string) (bridge.Status, bool)
	SubscribeBridges(fn func(name string)) (unsubscribe func())
	StartEnabledBridges(ps []*profile.Profile, lang words.Lang) map[string]error
}

// bridgeHub is the accounts view's link to the bridges: the Bridge button, one panel window per account, and the
// start of the bridges that were on when the app last ran. UI goroutine only.
type bridgeHub struct {
	app     fyne.App
	lang    words.Lang
	svc     BridgeService
	panels  map[string]*bridgePanel
	started bool
}

func newBridgeHub(a fyne.App, lang words.Lang, svc BridgeService) *bridgeHub {
	return &bridgeHub{app: a, lang: lang, svc: svc, panels: map[string]*bridgePanel{}}
}

// autostart starts, once per app run, the bridges that were on (in the background).
func (h *bridgeHub) autostart(es []profile.Entry) {
	if h.started {
		return
	}
	h.started = true
	var ps []*profile.Profile
	for _, e := range es {
		if e.Profile != nil {
			ps = append(ps, e.Profile.Clone())
		}
	}
	svc, lang := h.svc, h.lang
	go svc.StartEnabledBridges(ps, lang) // failures show in each account's panel (not running, last error)
}

// open shows (or brings forward) the bridge panel of p's account.
func (h *bridgeHub) open(p *profile.Profile) {
	if bp := h.panels[p.Name]; bp != nil {
		bp.win.RequestFocus()
		return
	}
	bp := newBridgePanel(h.app, h.lang, h.svc, p.Clone())
	h.panels[p.Name] = bp
	bp.win.SetOnClosed(func() {
		bp.close()
		delete(h.panels, p.Name)
	})
	bp.win.Show()
}

// bridgePanel is the Bridge window of one account: on/off, host and ports, the user name and bridge password with
// copy buttons, connected clients, card state, last problem in plain words, and the set-up steps for Thunderbird
// and Outlook. Widgets are touched on the UI goroutine only; service calls run in goroutines.
type bridgePanel struct {
	life
	win   fyne.Window
	app   fyne.App
	lang  words.Lang
	svc   BridgeService
	p     *profile.Profile
	setup bridge.Setup
	unsub func()

	enable    *widget.Check
	state     *widget.Label
	host      *widget.Entry
	imapPort  *widget.Entry
	smtpPort  *widget.Entry
	apply     *widget.Button
	user      *widget.Label
	password  *widget.Label // masked until Show
	shown     bool
	show      *widget.Button
	feedback  *widget.Label
	clients   *widget.Label
	card      *widget.Label
	lastErr   *widget.Label
	problem   *widget.Label // a start failure, in words
	certFile  *widget.Label
	tbSteps   *widget.Label
	olSteps   *widget.Label
	busy      bool
	running   bool
	mu        sync.Mutex // guards seq
	seq       int
	ignoreChk bool // the check box is being set by code
}

func newBridgePanel(a fyne.App, lang words.Lang, svc BridgeService, p *profile.Profile) *bridgePanel {
	bp := &bridgePanel{app: a, lang: lang, svc: svc, p: p}
	bp.win = a.NewWindow(bp.t("bridge.title", map[string]any{"Name": p.Name}))
	bp.build()
	bp.win.SetContent(bp.content())
	bp.win.Resize(fyne.NewSize(720, 760))
	name := p.Name
	bp.unsub = svc.SubscribeBridges(func(n string) {
		if n == name {
			bp.do(bp.refresh)
		}
	})
	bp.load()
	return bp
}

func (bp *bridgePanel) t(key string, data map[string]any) string { return words.T(bp.lang, key, data) }

func (bp *bridgePanel) close() {
	bp.end()
	if bp.unsub != nil {
		bp.unsub()
	}
}

// wordLabel is a label that wraps at words.
func wordLabel(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapWord
	return l
}

func (bp *bridgePanel) build() {
	bp.enable = widget.NewCheck(bp.t("bridge.enable", nil), func(on bool) {
		if !bp.ignoreChk {
			bp.switchTo(on)
		}
	})
	bp.state = widget.NewLabel(bp.t("bridge.stopped", nil))
	bp.host = widget.NewEntry()
	bp.imapPort = widget.NewEntry()
	bp.smtpPort = widget.NewEntry()
	for _, e := range []*widget.Entry{bp.host, bp.imapPort, bp.smtpPort} {
		e.OnChanged = func(string) { bp.apply.Enable() }
	}
	bp.apply = widget.NewButtonWithIcon(bp.t("bridge.apply", nil), theme.ConfirmIcon(), func() {
		if bp.running {
			bp.switchTo(true)
		}
		bp.fillSteps()
	})
	bp.user = widget.NewLabel(bp.p.Address)
	bp.user.TextStyle = fyne.TextStyle{Monospace: true}
	bp.password = widget.NewLabel("")
	bp.password.TextStyle = fyne.TextStyle{Monospace: true}
	bp.show = widget.NewButtonWithIcon(bp.t("bridge.show", nil), theme.VisibilityIcon(), bp.toggleShow)
	bp.feedback = widget.NewLabel("")
	bp.feedback.Hide()
	bp.clients = widget.NewLabel("")
	bp.card = wordLabel("")
	bp.lastErr = wordLabel("")
	bp.problem = wordLabel("")
	bp.problem.Importance = widget.DangerImportance
	bp.problem.Hide()
	bp.certFile = wordLabel("")
	bp.tbSteps = wordLabel("")
	bp.olSteps = wordLabel("")
	bp.setBusy(true)
}

func (bp *bridgePanel) content() fyne.CanvasObject {
	copyBtn := func(get func() string) *widget.Button {
		return widget.NewButtonWithIcon(bp.t("bridge.copy", nil), theme.ContentCopyIcon(), func() {
			bp.app.Clipboard().SetContent(get())
			bp.feedback.SetText(bp.t("bridge.copied", nil))
			bp.feedback.Show()
		})
	}
	reset := widget.NewButtonWithIcon(bp.t("bridge.reset_password", nil), theme.ViewRefreshIcon(), bp.confirmReset)
	form := widget.NewForm(
		widget.NewFormItem(bp.t("bridge.host", nil), bp.host),
		widget.NewFormItem(bp.t("bridge.imap_port", nil), bp.imapPort),
		widget.NewFormItem(bp.t("bridge.smtp_port", nil), bp.smtpPort),
	)
	creds := widget.NewForm(
		widget.NewFormItem(bp.t("bridge.user", nil), container.NewBorder(nil, nil, nil,
			copyBtn(func() string { return bp.p.Address }), bp.user)),
		widget.NewFormItem(bp.t("bridge.password", nil), container.NewVBox(bp.password,
			container.NewHBox(bp.show, copyBtn(func() string { return bp.setup.Password }), reset))),
	)
	title := widget.NewLabelWithStyle(bp.t("bridge.title", map[string]any{"Name": bp.p.Name}), fyne.TextAlignLeading,
		fyne.TextStyle{Bold: true})
	return container.NewVScroll(container.NewVBox(
		title,
		wordLabel(bp.t("bridge.intro", nil)),
		container.NewHBox(bp.enable, bp.state),
		bp.problem,
		widget.NewCard("", "", container.NewVBox(bp.card, bp.clients, bp.lastErr)),
		form,
		container.NewHBox(layout.NewSpacer(), bp.apply),
		creds,
		wordLabel(bp.t("bridge.password_hint", nil)),
		bp.feedback,
		wordLabel(bp.t("bridge.security", nil)),
		bp.certFile,
		widget.NewSeparator(),
		widget.NewLabelWithStyle(bp.t("bridge.setup.title", nil), fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		widget.NewCard("", bp.t("bridge.setup.thunderbird.title", nil), bp.tbSteps),
		widget.NewCard("", bp.t("bridge.setup.outlook.title", nil), bp.olSteps),
	))
}

// next starts a background operation; results of older ones are dropped.
func (bp *bridgePanel) next() int {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bp.seq++
	return bp.seq
}

func (bp *bridgePanel) latest(seq int) bool {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return seq == bp.seq
}

// load reads the saved settings and password in the background.
func (bp *bridgePanel) load() {
	seq := bp.next()
	svc, p := bp.svc, bp.p
	go func() {
		setup, err := svc.BridgeSetup(p)
		bp.do(func() {
			if !bp.latest(seq) {
				return
			}
			bp.setBusy(false)
			bp.setup = setup
			set := setup.Settings
			host, imapPort := bridgeHostPort(set.IMAP, bridge.DefaultIMAPAddr)
			_, smtpPort := bridgeHostPort(set.SMTP, bridge.DefaultSMTPAddr)
			bp.host.SetText(host)
			bp.imapPort.SetText(imapPort)
			bp.smtpPort.SetText(smtpPort)
			bp.showPassword()
			bp.certFile.SetText(bp.t("bridge.cert_file", map[string]any{"Path": setup.CertFile}))
			bp.apply.Disable()
			if err != nil {
				bp.showProblem(err)
			}
			bp.fillSteps()
			bp.refresh()
		})
	}()
}

func bridgeHostPort(addr, def string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		h, p, _ = net.SplitHostPort(def)
	}
	return h, p
}

// settings reads the form; ok is false (with the problem shown) when it is not valid.
func (bp *bridgePanel) settings() (bridge.Settings, bool) {
	host := bp.host.Text
	ports := make([]int, 2)
	for i, e := range []*widget.Entry{bp.imapPort, bp.smtpPort} {
		n, err := strconv.Atoi(e.Text)
		if err != nil || n < 1 || n > 65535 {
			bp.showText(bp.t("bridge.err.bad_port", nil))
			return bridge.Settings{}, false
		}
		ports[i] = n
	}
	if ports[0] == ports[1] {
		bp.showText(bp.t("bridge.err.same_port", nil))
		return bridge.Settings{}, false
	}
	set := bridge.Settings{IMAP: net.JoinHostPort(host, strconv.Itoa(ports[0])), SMTP: net.JoinHostPort(host, strconv.Itoa(ports[1]))}
	if _, err := bridge.CheckLoopback(set.IMAP); err != nil {
		bp.showText(bp.t("bridge.err.not_loopback", nil))
		return bridge.Settings{}, false
	}
	return set, true
}

// switchTo starts (with the form's settings) or stops the bridge in the background.
func (bp *bridgePanel) switchTo(on bool) {
	var set bridge.Settings
	if on {
		var ok bool
		if set, ok = bp.settings(); !ok {
			bp.setChecked(bp.running)
			return
		}
	}
	bp.problem.Hide()
	bp.setBusy(true)
	seq := bp.next()
	svc, p, lang := bp.svc, bp.p, bp.lang
	go func() {
		var err error
		if on {
			err = svc.StartBridge(p, set, lang)
		} else {
			err = svc.StopBridge(p.Name)
		}
		bp.do(func() {
			if !bp.latest(seq) {
				return
			}
			bp.setBusy(false)
			if err != nil {
				bp.showProblem(err)
			} else {
				bp.apply.Disable()
			}
			bp.refresh()
		})
	}()
}

// refresh shows the bridge's status.
func (bp *bridgePanel) refresh() {
	st, running := bp.svc.BridgeStatus(bp.p.Name)
	bp.running = running
	bp.setChecked(running)
	if running {
		bp.state.SetText(bp.t("bridge.running", nil))
		bp.state.Importance = widget.SuccessImportance
	} else {
		bp.state.SetText(bp.t("bridge.stopped", nil))
		bp.state.Importance = widget.MediumImportance
	}
	bp.state.Refresh()
	bp.clients.SetText(bp.t("bridge.clients", map[string]any{"Count": st.Clients}))
	card := st.Card
	if card == "" {
		card = bridge.CardUnknown
	}
	bp.card.SetText(bp.t("bridge.card."+string(card), nil))
	switch card {
	case bridge.CardAbsent:
		bp.card.Importance = widget.WarningImportance
	case bridge.CardReady:
		bp.card.Importance = widget.SuccessImportance
	default:
		bp.card.Importance = widget.MediumImportance
	}
	bp.card.Refresh()
	if st.LastCode == "" {
		bp.lastErr.SetText(bp.t("bridge.no_error", nil))
		bp.lastErr.Importance = widget.LowImportance
	} else {
		bp.lastErr.SetText(bp.t("bridge.last_error", map[string]any{"Time": st.LastTime.Local().Format("15:04"),
			"Reason": headline(bp.lang, st.LastCode) + " " + remedy(bp.lang, st.LastCode)}))
		bp.lastErr.Importance = widget.WarningImportance
	}
	bp.lastErr.Refresh()
}

func (bp *bridgePanel) setChecked(on bool) {
	bp.ignoreChk = true
	bp.enable.SetChecked(on)
	bp.ignoreChk = false
}

func (bp *bridgePanel) setBusy(busy bool) {
	bp.busy = busy
	if busy {
		bp.enable.Disable()
	} else {
		bp.enable.Enable()
	}
}

// showProblem says why the bridge could not start (or stop), in plain words.
func (bp *bridgePanel) showProblem(err error) {
	var le *bridge.ListenError
	switch {
	case errors.As(err, &le) && errors.Is(err, bridge.ErrPortInUse):
		bp.showText(bp.t("bridge.err.port_in_use", map[string]any{"Addr": le.Addr}))
	case errors.Is(err, bridge.ErrNotLoopback):
		bp.showText(bp.t("bridge.err.not_loopback", nil))
	default:
		bp.showText(bp.t("bridge.err.start", map[string]any{"Detail": err.Error()}))
	}
}

func (bp *bridgePanel) showText(s string) {
	bp.problem.SetText(s)
	bp.problem.Show()
}

func (bp *bridgePanel) toggleShow() {
	bp.shown = !bp.shown
	if bp.shown {
		bp.show.SetText(bp.t("bridge.hide", nil))
	} else {
		bp.show.SetText(bp.t("bridge.show", nil))
	}
	bp.showPassword()
}

// showPassword shows the bridge password, or as many dots while it is masked.
func (bp *bridgePanel) showPassword() {
	if bp.shown {
		bp.password.SetText(bp.setup.Password)
	} else {
		bp.password.SetText(strings.Repeat("•", len([]rune(bp.setup.Password))))
	}
}

// confirmReset asks, then gives the account a new bridge password.
func (bp *bridgePanel) confirmReset() {
	dialog.ShowConfirm(bp.t("bridge.reset_password", nil), bp.t("bridge.reset_confirm", nil), func(yes bool) {
		if !yes {
			return
		}
		seq := bp.next()
		svc, p, lang := bp.svc, bp.p, bp.lang
		go func() {
			pw, err := svc.ResetBridgePassword(p, lang)
			bp.do(func() {
				if !bp.latest(seq) {
					return
				}
				if pw != "" {
					bp.setup.Password = pw
					bp.showPassword()
				}
				if err != nil {
					bp.showProblem(err)
				}
				bp.refresh()
			})
		}()
	}, bp.win)
}

// fillSteps writes the set-up steps with this account's values.
func (bp *bridgePanel) fillSteps() {
	data := map[string]any{"User": bp.p.Address, "Host": bp.host.Text, "IMAP": bp.imapPort.Text, "SMTP": bp.smtpPort.Text}
	bp.tbSteps.SetText(bp.t("bridge.setup.thunderbird.steps", data))
	bp.olSteps.SetText(bp.t("bridge.setup.outlook.steps", data))
}

// bridgeButton is the accounts view's Bridge action (nil without a BridgeService).
func (v *accountsView) bridgeButton() *widget.Button {
	if v.bridges == nil {
		return nil
	}
	if v.bridgeBtn == nil {
		v.bridgeBtn = widget.NewButtonWithIcon(v.t("bridge.button", nil), theme.MailForwardIcon(), func() {
			if e, ok := v.current(); ok && e.Profile != nil {
				v.bridges.open(e.Profile)
			}
		})
	}
	return v.bridgeBtn
}
