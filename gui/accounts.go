package gui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// opTimeout bounds one account operation started from the main window (diagnosis of both protocols, test send,
// reconnect of one account).
const opTimeout = 2 * time.Minute

// errCardGone is what an open mailbox shows after its card left: the person must insert the card again.
var errCardGone = fmt.Errorf("card removed: %w", session.ErrCardAbsent)

// accountState is what the main window knows of one account's connection.
type accountState int

const (
	stateIdle       accountState = iota // nothing tried since the app started
	stateBusy                           // an operation is running
	stateConnected                      // the last operation reached the mailbox
	stateCardNeeded                     // the card left (or was absent): insert it, then Reconnect
	stateFailed                         // the last operation failed for another reason (code)
)

type accountStatus struct {
	state accountState
	code  diagnosis.Code // stateFailed only
}

// accountsView lists the saved accounts with their status, and runs the account operations (add, edit, delete, open
// mailbox, diagnose, send a test message). Its fields are touched on the UI goroutine only; store and mail calls run
// in goroutines that hand results over with fyne.Do.
type accountsView struct {
	life
	app   fyne.App
	win   fyne.Window
	lang  words.Lang
	store AccountStore
	mail  MailService
	cards CardService

	entries  []profile.Entry
	listErr  error
	status   map[string]accountStatus
	selected int // index into entries, -1 for none
	browsers map[string]*browserWindow

	list      *widget.List
	info      *widget.Label // store errors
	add       *widget.Button
	edit      *widget.Button
	del       *widget.Button
	open      *widget.Button
	diagnose  *widget.Button
	sendTest  *widget.Button
	reconnect *widget.Button
	reconBar  *fyne.Container
	bridges   *bridgeHub     // nil without a BridgeService (gui/bridge.go)
	bridgeBtn *widget.Button // the Bridge action, made by bridgeButton

	listing *job // reading the saved accounts
}

// browserWindow is an open folder browser.
type browserWindow struct {
	win fyne.Window
	b   *folderBrowser
}

func newAccountsView(a fyne.App, w fyne.Window, lang words.Lang, store AccountStore, svc MailService,
	cards CardService) *accountsView {
	v := &accountsView{app: a, win: w, lang: lang, store: store, mail: svc, cards: cards, selected: -1,
		status: map[string]accountStatus{}, browsers: map[string]*browserWindow{}}
	v.list = widget.NewList(
		func() int { return len(v.entries) },
		func() fyne.CanvasObject { return newIconRow(theme.MailComposeIcon(), true) },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(v.entries) {
				return
			}
			v.fillRow(v.entries[i], o)
		})
	v.list.OnSelected = func(i widget.ListItemID) {
		v.selected = i
		v.updateButtons()
	}
	v.list.OnUnselected = func(widget.ListItemID) {
		v.selected = -1
		v.updateButtons()
	}
	v.info = widget.NewLabel("")
	v.info.Wrapping = fyne.TextWrapWord
	v.info.Hide()
	v.add = widget.NewButtonWithIcon(v.t("accounts.add", nil), theme.ContentAddIcon(), func() { v.showWizard(nil) })
	v.edit = widget.NewButtonWithIcon(v.t("accounts.edit", nil), theme.DocumentCreateIcon(), func() {
		if e, ok := v.current(); ok {
			v.showWizard(e.Profile)
		}
	})
	v.del = widget.NewButtonWithIcon(v.t("accounts.delete", nil), theme.DeleteIcon(), v.confirmDelete)
	v.open = widget.NewButtonWithIcon(v.t("accounts.open", nil), theme.MailComposeIcon(), v.openMailbox)
	v.open.Importance = widget.HighImportance
	v.diagnose = widget.NewButtonWithIcon(v.t("accounts.diagnose", nil), theme.SearchIcon(), v.runDiagnosis)
	v.sendTest = widget.NewButtonWithIcon(v.t("accounts.send_test", nil), theme.MailSendIcon(), v.runSendTest)
	v.reconnect = widget.NewButtonWithIcon(v.t("accounts.reconnect", nil), theme.ViewRefreshIcon(), v.reconnectAll)
	v.reconnect.Importance = widget.HighImportance
	v.reconBar = container.NewBorder(nil, nil, nil, v.reconnect, widget.NewLabel(v.t("accounts.reconnect_offer", nil)))
	v.reconBar.Hide()
	v.listing = &job{life: &v.life, timeout: opTimeout}
	v.updateButtons()
	return v
}

// adopt takes over the statuses and open mailboxes of the view old (nil: nothing) that a rebuild in another language
// replaces. UI goroutine.
func (v *accountsView) adopt(old *accountsView) {
	if old == nil {
		return
	}
	v.status, v.browsers = old.status, old.browsers
	for name, bw := range v.browsers {
		bw.b.onResult = func(err error) { v.setResult(name, err) }
		bw.b.onReconnect = v.reconnectAll
	}
}

func (v *accountsView) t(key string, data map[string]any) string { return words.T(v.lang, key, data) }

// content lays the view out: title, reconnect offer, the list, and the action buttons.
func (v *accountsView) content() fyne.CanvasObject {
	title := widget.NewLabelWithStyle(v.t("accounts.title", nil), fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	// One row of buttons that fits the default window in French and English (TestViewsFitDefaultSize): it never
	// scrolls.
	actions := container.NewHBox(v.add, v.edit, v.del, widget.NewSeparator(), v.open, v.diagnose, v.sendTest)
	if b := v.bridgeButton(); b != nil {
		actions.Add(b)
	}
	return container.NewBorder(container.NewVBox(title, v.reconBar, v.info), actions, nil, nil, v.list)
}

// fillRow shows one account: its name, address and status.
func (v *accountsView) fillRow(e profile.Entry, row fyne.CanvasObject) {
	icon, title, detail := iconRowParts(row)
	name := e.Name
	if e.ReadOnly {
		name = v.t("accounts.preset", map[string]any{"Name": e.Name})
	}
	title.SetText(name)
	if e.Profile == nil {
		icon.SetResource(theme.ErrorIcon())
		detail.Importance = widget.DangerImportance
		switch {
		case errors.Is(e.Err, profile.ErrUnsafePreset):
			detail.SetText(v.t("accounts.preset_unsafe", nil))
		case errors.As(e.Err, new(*profile.ValidationError)) && e.ReadOnly:
			detail.SetText(v.t("accounts.preset_invalid", nil))
		default:
			detail.SetText(v.t("accounts.broken", nil))
		}
		return
	}
	st := v.status[e.Name]
	text, imp, res := v.statusText(st)
	icon.SetResource(res)
	detail.Importance = imp
	detail.SetText(e.Profile.Address + " — " + text)
}

// statusText is the status line of an account in words, with its importance and icon.
func (v *accountsView) statusText(st accountStatus) (string, widget.Importance, fyne.Resource) {
	switch st.state {
	case stateBusy:
		return v.t("accounts.status.busy", nil), widget.MediumImportance, theme.ViewRefreshIcon()
	case stateConnected:
		return v.t("accounts.status.connected", nil), widget.SuccessImportance, theme.ConfirmIcon()
	case stateCardNeeded:
		return v.t("accounts.status.card_needed", nil), widget.WarningImportance, theme.WarningIcon()
	case stateFailed:
		return v.t("accounts.status.failed", map[string]any{"Reason": headline(v.lang, st.code)}),
			widget.DangerImportance, theme.ErrorIcon()
	}
	return v.t("accounts.status.idle", nil), widget.LowImportance, theme.MailComposeIcon()
}

// current returns the selected entry.
func (v *accountsView) current() (profile.Entry, bool) {
	if v.selected < 0 || v.selected >= len(v.entries) {
		return profile.Entry{}, false
	}
	return v.entries[v.selected], true
}

// updateButtons enables the actions that apply to the selection: a broken file can only be deleted (when it is the
// user's) or edited, a read-only system preset cannot be deleted, and only one operation runs per account.
func (v *accountsView) updateButtons() {
	e, ok := v.current()
	usable := ok && e.Profile != nil && v.status[e.Name].state != stateBusy
	set := func(b *widget.Button, on bool) {
		if on {
			b.Enable()
		} else {
			b.Disable()
		}
	}
	set(v.edit, ok && e.Profile != nil)
	set(v.del, ok && !e.ReadOnly)
	set(v.open, usable)
	set(v.diagnose, usable)
	set(v.sendTest, usable)
	if v.bridgeBtn != nil {
		set(v.bridgeBtn, ok && e.Profile != nil)
	}
}

// reload reads the saved accounts in the background and shows them; a newer reload supersedes an older one. UI
// goroutine.
func (v *accountsView) reload() {
	store := v.store
	v.listing.start(func(_ context.Context, r run) {
		es, err := store.List()
		r.end(func() { v.applyList(es, err) })
	})
}

// applyList shows a list of entries, keeping the selection by name. UI goroutine.
func (v *accountsView) applyList(es []profile.Entry, err error) {
	var keep string
	if e, ok := v.current(); ok {
		keep = e.Name
	}
	v.entries, v.listErr = es, err
	if v.bridges != nil && err == nil {
		v.bridges.autostart(es)
	}
	if err != nil {
		v.info.SetText(v.t("accounts.list_failed", map[string]any{"Detail": err.Error()}))
		v.info.Importance = widget.DangerImportance
		v.info.Show()
	} else if len(es) == 0 {
		v.info.SetText(v.t("accounts.none", nil))
		v.info.Importance = widget.MediumImportance
		v.info.Show()
	} else {
		v.info.Hide()
	}
	v.selected = -1
	v.list.UnselectAll()
	for i, e := range es {
		if e.Name == keep {
			v.list.Select(i)
		}
	}
	v.list.Refresh()
	v.updateButtons()
}

// setStatus records an account's status and shows it. UI goroutine.
func (v *accountsView) setStatus(name string, st accountStatus) {
	v.status[name] = st
	v.list.Refresh()
	v.updateButtons()
}

// setResult turns an operation's error into the account's status: connected, card needed, or failed. UI goroutine.
func (v *accountsView) setResult(name string, err error) {
	if err == nil {
		v.setStatus(name, accountStatus{state: stateConnected})
		return
	}
	switch code := errorCode(err); code {
	case diagnosis.CardAbsent, diagnosis.CardRemoved:
		v.setStatus(name, accountStatus{state: stateCardNeeded})
	default:
		v.setStatus(name, accountStatus{state: stateFailed, code: code})
	}
}

// onEvent follows card events (called on the session manager's goroutine; must not block): a removed card switches
// the open accounts to "card needed" and tells the open mailboxes; an inserted card offers Reconnect.
func (v *accountsView) onEvent(ev session.Event) {
	switch ev.Kind {
	case session.CardRemoved, session.ServiceDown:
		v.do(v.cardGone)
	case session.CardInserted:
		v.do(v.cardBack)
	}
}

// cardGone: every account that was connected or busy now needs the card. UI goroutine.
func (v *accountsView) cardGone() {
	for name, st := range v.status {
		if st.state == stateConnected || st.state == stateBusy {
			v.status[name] = accountStatus{state: stateCardNeeded}
		}
	}
	for name, bw := range v.browsers {
		v.status[name] = accountStatus{state: stateCardNeeded}
		bw.b.cardGone()
	}
	v.reconBar.Hide()
	v.list.Refresh()
	v.updateButtons()
}

// cardBack offers Reconnect, here and in the open mailboxes, when some account waits for the card. UI goroutine.
func (v *accountsView) cardBack() {
	for _, st := range v.status {
		if st.state == stateCardNeeded {
			v.reconBar.Show()
			for _, bw := range v.browsers {
				bw.b.cardBack()
			}
			return
		}
	}
}

// reconnectAll reconnects the accounts that wait for the card, one after the other so that the session manager asks
// the PIN once (the first login of the card session), then refreshes the open mailboxes. UI goroutine.
func (v *accountsView) reconnectAll() {
	v.reconBar.Hide()
	for _, bw := range v.browsers {
		bw.b.reconnectB.Hide()
	}
	var todo []*profile.Profile
	for _, e := range v.entries {
		if e.Profile != nil && v.status[e.Name].state == stateCardNeeded {
			todo = append(todo, e.Profile.Clone())
			v.status[e.Name] = accountStatus{state: stateBusy}
		}
	}
	v.list.Refresh()
	v.updateButtons()
	svc := v.mail
	go func() {
		for _, p := range todo {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			_, err := svc.Folders(ctx, p)
			cancel()
			name := p.Name
			v.do(func() {
				v.setResult(name, err)
				switch bw := v.browsers[name]; {
				case bw == nil:
				case err == nil:
					bw.b.refresh()
				default:
					bw.b.showError(err)
				}
			})
		}
	}()
}

// showWizard opens the account wizard to add (p nil) or edit p; a saved account reloads the list.
func (v *accountsView) showWizard(p *profile.Profile) {
	ShowWizard(v.win, v.lang, WizardDeps{Store: v.store, Mail: v.mail, Certs: v.cards.Certificates}, p,
		func(saved *profile.Profile) {
			if saved != nil {
				delete(v.status, saved.Name)
			}
			v.reload()
		})
}

// confirmDelete asks before deleting the selected user profile; read-only presets are never deleted.
func (v *accountsView) confirmDelete() {
	e, ok := v.current()
	if !ok || e.ReadOnly {
		return
	}
	name := e.Name
	d := dialog.NewConfirm(v.t("accounts.delete_title", nil), v.t("accounts.delete_confirm", map[string]any{"Name": name}),
		func(yes bool) {
			if !yes {
				return
			}
			go func() {
				err := v.store.Delete(name)
				v.do(func() {
					if err != nil {
						v.showFailure(v.t("accounts.delete_title", nil), v.t("accounts.delete_failed", nil), err)
					}
					delete(v.status, name)
					if bw := v.browsers[name]; bw != nil {
						bw.win.Close()
					}
					v.reload()
				})
			}()
		}, v.win)
	d.SetConfirmText(v.t("accounts.delete", nil))
	d.SetDismissText(v.t("pin.cancel", nil))
	d.SetConfirmImportance(widget.DangerImportance)
	d.Show()
}

// openMailbox opens (or brings forward) the folder browser of the selected account.
func (v *accountsView) openMailbox() {
	e, ok := v.current()
	if !ok || e.Profile == nil {
		return
	}
	name := e.Name
	if bw := v.browsers[name]; bw != nil {
		bw.win.RequestFocus()
		bw.b.refresh()
		return
	}
	v.setStatus(name, accountStatus{state: stateBusy})
	w, b := openBrowser(v.app, v.lang, v.mail, e.Profile, func(err error) { v.setResult(name, err) }, func() {
		delete(v.browsers, name)
		if v.status[name].state == stateBusy {
			v.setStatus(name, accountStatus{})
		}
	})
	b.onReconnect = v.reconnectAll
	v.browsers[name] = &browserWindow{win: w, b: b}
}

// showProgress shows a modal "working" dialog with an activity bar, body (may be nil) and a Cancel button that
// calls cancel. The caller hides it when the work ends. UI goroutine.
func (v *accountsView) showProgress(title string, body fyne.CanvasObject, cancel context.CancelFunc) *dialog.CustomDialog {
	rows := []fyne.CanvasObject{widget.NewProgressBarInfinite()}
	if body != nil {
		rows = append(rows, body)
	}
	stop := widget.NewButtonWithIcon(v.t("pin.cancel", nil), theme.CancelIcon(), cancel)
	d := dialog.NewCustomWithoutButtons(title, container.NewVScroll(container.NewVBox(rows...)), v.win)
	d.SetButtons([]fyne.CanvasObject{stop})
	d.Resize(fyne.NewSize(480, 360))
	d.Show()
	return d
}

// runDiagnosis checks the selected account's IMAP then SMTP side in the background, with progress, then shows the
// report (the first failing side's, else the IMAP one) with ShowDiagnostics.
func (v *accountsView) runDiagnosis() {
	e, ok := v.current()
	if !ok || e.Profile == nil {
		return
	}
	name, p := e.Name, e.Profile.Clone()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	ladder := NewStepLadder(v.lang)
	ladder.SetRunning(true)
	pd := v.showProgress(v.t("accounts.diagnosing", map[string]any{"Name": name}), ladder, cancel)
	v.setStatus(name, accountStatus{state: stateBusy})
	svc := v.mail
	go func() {
		defer cancel()
		var reports []*diagnosis.Report
		for _, proto := range []string{diagnosis.ProtocolIMAP, diagnosis.ProtocolSMTP} {
			v.do(func() { ladder.AddSection(strings.ToUpper(proto)) })
			r := svc.Check(ctx, p, proto, func(s diagnosis.Step) { v.do(func() { ladder.Add(s) }) })
			v.do(func() { ladder.SetSteps(r.Steps) })
			reports = append(reports, r)
			if ctx.Err() != nil {
				break
			}
		}
		cancelled := errors.Is(ctx.Err(), context.Canceled)
		v.do(func() {
			pd.Hide()
			shown := reports[0]
			for _, r := range reports {
				if !r.OK {
					shown = r
					break
				}
			}
			switch {
			case cancelled:
				v.setStatus(name, accountStatus{})
				return
			case shown.OK:
				v.setStatus(name, accountStatus{state: stateConnected})
			case shown.Code == diagnosis.CardAbsent || shown.Code == diagnosis.CardRemoved:
				v.setStatus(name, accountStatus{state: stateCardNeeded})
			default:
				v.setStatus(name, accountStatus{state: stateFailed, code: shown.Code})
			}
			ShowDiagnostics(v.win, v.lang, shown)
		})
	}()
}

// runSendTest sends the test message (body in the person's language) to the selected account's own address in the
// background, with progress, then says in plain words whether it went.
func (v *accountsView) runSendTest() {
	e, ok := v.current()
	if !ok || e.Profile == nil {
		return
	}
	name, p := e.Name, e.Profile.Clone()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	pd := v.showProgress(v.t("accounts.sending", map[string]any{"Address": p.Address}), nil, cancel)
	v.setStatus(name, accountStatus{state: stateBusy})
	body := v.t("sendtest.body", map[string]any{"Address": p.Address})
	svc := v.mail
	go func() {
		defer cancel()
		sent, err := svc.SendTest(ctx, p, body)
		cancelled := errors.Is(ctx.Err(), context.Canceled)
		v.do(func() {
			pd.Hide()
			if cancelled {
				v.setStatus(name, accountStatus{})
				return
			}
			v.setResult(name, err)
			title := v.t("sendtest.title", nil)
			if err != nil {
				head := v.t("sendtest.failed", nil)
				if errors.Is(err, mail.ErrDeliveryUnconfirmed) {
					head = v.t("sendtest.unconfirmed", nil)
				}
				v.showFailure(title, head, err)
				return
			}
			dialog.ShowInformation(title, v.t("sendtest.sent", map[string]any{"To": strings.Join(sent.To, ", ")}), v.win)
		})
	}()
}

// showFailure shows a failed operation: a headline, the code's message and remedy in plain words, and the technical
// text folded under "details". UI goroutine.
func (v *accountsView) showFailure(title, headline string, err error) {
	message, remedy := explainError(v.lang, err)
	msg := widget.NewLabel(headline + "\n" + message + "\n" + remedy)
	msg.Wrapping = fyne.TextWrapWord
	detail := widget.NewLabel(err.Error())
	detail.Wrapping = fyne.TextWrapBreak
	acc := widget.NewAccordion(widget.NewAccordionItem(v.t("details.title", nil), detail))
	d := dialog.NewCustom(title, v.t("picker.close", nil), container.NewVBox(msg, acc), v.win)
	d.Resize(fyne.NewSize(520, d.MinSize().Height))
	d.Show()
}
