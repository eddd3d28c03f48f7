package gui

import (
	"context"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/words"
)

// StepLadder shows the steps of one or more diagnosis runs (one section per protocol): a tick or a cross per step
// with its name, duration and technical detail, and a spinner row while a step is in progress. It is filled live
// from a progress callback (through fyne.Do) or at once from a report. UI goroutine only.
type StepLadder struct {
	widget.BaseWidget
	lang     words.Lang
	box      *fyne.Container
	sections []ladderSection
	running  bool
	spin     *widget.Activity
}

type ladderSection struct {
	title string
	steps []diagnosis.Step
}

// NewStepLadder returns an empty ladder whose words are in lang.
func NewStepLadder(lang words.Lang) *StepLadder {
	l := &StepLadder{lang: lang, box: container.NewVBox(), spin: widget.NewActivity()}
	l.ExtendBaseWidget(l)
	return l
}

// CreateRenderer is part of fyne.Widget.
func (l *StepLadder) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(l.box) }

// Reset removes every section and stops the spinner.
func (l *StepLadder) Reset() {
	l.sections = nil
	l.SetRunning(false)
	l.rebuild()
}

// AddSection starts a new section with a heading ("" for none); later steps go into it.
func (l *StepLadder) AddSection(title string) {
	l.sections = append(l.sections, ladderSection{title: title})
	l.rebuild()
}

// Add appends a finished step to the last section (one is created when there is none).
func (l *StepLadder) Add(s diagnosis.Step) {
	if len(l.sections) == 0 {
		l.sections = append(l.sections, ladderSection{})
	}
	last := &l.sections[len(l.sections)-1]
	last.steps = append(last.steps, s)
	l.rebuild()
}

// SetSteps replaces the steps of the last section with steps (the report's, which are authoritative once a run
// has ended: a progress callback may have missed some).
func (l *StepLadder) SetSteps(steps []diagnosis.Step) {
	if len(l.sections) == 0 {
		l.sections = append(l.sections, ladderSection{})
	}
	l.sections[len(l.sections)-1].steps = append([]diagnosis.Step(nil), steps...)
	l.rebuild()
}

// SetRunning shows or hides the spinner row after the last step.
func (l *StepLadder) SetRunning(on bool) {
	if l.running != on {
		l.running = on
		if on {
			l.spin.Start()
		} else {
			l.spin.Stop()
		}
		l.rebuild()
	}
}

// StepCount returns the number of steps shown, all sections together.
func (l *StepLadder) StepCount() int {
	n := 0
	for _, s := range l.sections {
		n += len(s.steps)
	}
	return n
}

func (l *StepLadder) rebuild() {
	var rows []fyne.CanvasObject
	for _, sec := range l.sections {
		if sec.title != "" {
			rows = append(rows, widget.NewLabelWithStyle(sec.title, fyne.TextAlignLeading, fyne.TextStyle{Bold: true}))
		}
		for _, s := range sec.steps {
			rows = append(rows, l.stepRow(s))
		}
	}
	if l.running {
		rows = append(rows, container.NewHBox(l.spin, widget.NewLabel(words.T(l.lang, "diag.running", nil))))
	}
	l.box.Objects = rows
	l.box.Refresh()
}

func (l *StepLadder) stepRow(s diagnosis.Step) fyne.CanvasObject {
	icon := widget.NewIcon(theme.NewSuccessThemedResource(theme.ConfirmIcon()))
	if !s.OK {
		icon.SetResource(theme.NewErrorThemedResource(theme.CancelIcon()))
	}
	name := widget.NewLabelWithStyle(stepName(l.lang, s.Name), fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	ms := widget.NewLabel(words.T(l.lang, "diag.ms", map[string]any{"Ms": strconv.FormatFloat(s.Ms, 'f', 0, 64)}))
	head := container.NewBorder(nil, nil, icon, ms, name)
	if s.Detail == "" {
		return head
	}
	detail := widget.NewLabel(s.Detail)
	detail.Wrapping = fyne.TextWrapBreak
	detail.Importance = widget.LowImportance
	return container.NewVBox(head, container.NewPadded(detail))
}

// stepName returns the words for a ladder step name, or the name itself for a step without words.
func stepName(lang words.Lang, name string) string {
	if key := "diag.step." + name; words.Has(lang, key) || words.Has(words.English, key) {
		return words.T(lang, key, nil)
	}
	return name
}

// diagView is the diagnostics dialog. UI goroutine only.
type diagView struct {
	life
	win      fyne.Window
	lang     words.Lang
	r        *diagnosis.Report
	dlg      *dialog.CustomDialog
	keys     *keys
	body     *container.Scroll
	ladder   *StepLadder
	status   *widget.Label
	copyBtn  *keyButton
	saveBtn  *keyButton
	closeBtn *keyButton
	save     *job // writing the report to a file
}

// ShowDiagnostics shows report r over w: the verdict in plain words (the code's message and remedy in large type),
// the step ladder, every technical fact, and buttons to copy the report (r.Text()) to the clipboard or save it to
// a file (r.JSON() for a name ending in ".json", else r.Text()). The report is built redacted by package
// diagnosis: it never holds a PIN or a password. Escape or Enter closes the dialog.
func ShowDiagnostics(w fyne.Window, lang words.Lang, r *diagnosis.Report) {
	newDiagView(w, lang, r).show()
}

func newDiagView(w fyne.Window, lang words.Lang, r *diagnosis.Report) *diagView {
	v := &diagView{win: w, lang: lang, r: explainReport(lang, r)}
	v.save = &job{life: &v.life, timeout: time.Minute}
	t := v.t
	k := &keys{}
	v.keys = k
	v.copyBtn = newKeyButton(k, t("diag.copy", nil), theme.ContentCopyIcon(), v.copyReport)
	v.saveBtn = newKeyButton(k, t("diag.save", nil), theme.DocumentSaveIcon(), v.chooseFile)
	v.closeBtn = newKeyButton(k, t("picker.close", nil), theme.CancelIcon(), func() { v.dlg.Hide() })
	v.closeBtn.Importance = widget.HighImportance
	k.escape = func() { v.dlg.Hide() }
	k.enter = k.escape

	v.status = widget.NewLabel("")
	v.status.Wrapping = fyne.TextWrapWord
	v.status.Hide()
	v.ladder = NewStepLadder(lang)
	v.ladder.SetSteps(r.Steps)

	body := container.NewVBox(verdict(v.r), widget.NewSeparator(), v.ladder, widget.NewSeparator(),
		widget.NewLabelWithStyle(t("diag.technical", nil), fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		v.details(), v.status)
	v.body = container.NewVScroll(body)
	v.dlg = dialog.NewCustomWithoutButtons(t("diag.title", nil), v.body, w)
	v.dlg.SetButtons([]fyne.CanvasObject{v.copyBtn, v.saveBtn, v.closeBtn})
	v.dlg.Resize(dialogSize(w, 720, 560))
	return v
}

// show puts the dialog on screen with the focus on Close; Enter and Escape close it even with nothing focused
// (the canvas key handler in place before is restored on close).
func (v *diagView) show() {
	c := v.win.Canvas()
	prev := c.OnTypedKey()
	c.SetOnTypedKey(func(ev *fyne.KeyEvent) {
		if !v.keys.handle(ev) && prev != nil {
			prev(ev)
		}
	})
	v.dlg.SetOnClosed(func() {
		v.end()
		c.SetOnTypedKey(prev)
	})
	v.dlg.Show()
	c.Focus(v.closeBtn)
}

func (v *diagView) t(key string, data map[string]any) string { return words.T(v.lang, key, data) }

// verdict is the headline of a report whose words explainReport filled: its code's message in large type and the
// remedy below it.
func verdict(r *diagnosis.Report) fyne.CanvasObject {
	head := widget.NewRichText(&widget.TextSegment{Style: widget.RichTextStyleSubHeading, Text: r.Message})
	head.Wrapping = fyne.TextWrapWord
	remedy := widget.NewRichText(&widget.TextSegment{Style: widget.RichTextStyleStrong, Text: r.Remedy})
	remedy.Wrapping = fyne.TextWrapWord
	icon := widget.NewIcon(theme.NewErrorThemedResource(theme.ErrorIcon()))
	if r.OK {
		icon.SetResource(theme.NewSuccessThemedResource(theme.ConfirmIcon()))
	}
	return container.NewBorder(nil, nil, container.NewVBox(icon), nil, container.NewVBox(head, remedy))
}

// details lists the technical facts of the report.
func (v *diagView) details() fyne.CanvasObject {
	r, t := v.r, v.t
	orDash := func(s string) string {
		if strings.TrimSpace(s) == "" {
			return "—"
		}
		return s
	}
	yesNo := func(b bool) string {
		if b {
			return t("diag.yes", nil)
		}
		return t("diag.no", nil)
	}
	sent := t("diag.none", nil)
	if r.TLS.ClientCertSent != nil {
		sent = *r.TLS.ClientCertSent
	}
	form := widget.NewForm(
		widget.NewFormItem(t("diag.f_code", nil), wrapLabel(string(r.Code))),
		widget.NewFormItem(t("diag.f_tls_version", nil), wrapLabel(orDash(r.TLS.Version))),
		widget.NewFormItem(t("diag.f_cipher", nil), wrapLabel(orDash(r.TLS.CipherSuite))),
	)
	for i, c := range r.TLS.ServerChain {
		form.Append(t("diag.f_server_cert", map[string]any{"N": i + 1}), wrapLabel(t("diag.cert_facts",
			map[string]any{"Subject": c.Subject, "Issuer": c.Issuer, "NotAfter": c.NotAfter, "SHA256": c.SHA256})))
	}
	if len(r.TLS.ServerChain) == 0 {
		form.Append(t("diag.f_server_cert", map[string]any{"N": 1}), wrapLabel("—"))
	}
	form.Append(t("diag.f_cert_requested", nil), wrapLabel(yesNo(r.TLS.ClientCertRequested)))
	form.Append(t("diag.f_acceptable_cas", nil), wrapLabel(orDash(strings.Join(r.TLS.AcceptableCAs, "\n"))))
	form.Append(t("diag.f_cert_sent", nil), wrapLabel(sent))
	form.Append(t("diag.f_signature", nil), wrapLabel(orDash(r.TLS.SignatureScheme)))
	form.Append(t("diag.f_greeting", nil), wrapLabel(orDash(r.Server.Greeting)))
	form.Append(t("diag.f_capabilities", nil), wrapLabel(orDash(strings.Join(r.Server.Capabilities, " "))))
	form.Append(t("diag.f_reader", nil), wrapLabel(orDash(r.Card.Reader)))
	form.Append(t("diag.f_token", nil), wrapLabel(orDash(r.Card.Token)))
	form.Append(t("diag.f_card_cert", nil), wrapLabel(orDash(r.Card.CertSHA256)))
	if r.Err != nil {
		form.Append(t("diag.f_error", nil), wrapLabel(r.Err.Error()))
	}
	return form
}

func (v *diagView) setStatus(text string, bad bool) {
	v.status.Importance = widget.SuccessImportance
	if bad {
		v.status.Importance = widget.DangerImportance
	}
	v.status.SetText(text)
	v.status.Show()
	relayout(v.body)
}

// copyReport puts the text report on the clipboard.
func (v *diagView) copyReport() {
	fyne.CurrentApp().Clipboard().SetContent(v.r.Text())
	v.setStatus(v.t("diag.copied", nil), false)
}

// chooseFile asks where to save the report; the write runs off the UI goroutine.
func (v *diagView) chooseFile() {
	d := dialog.NewFileSave(func(wc fyne.URIWriteCloser, err error) {
		if err != nil {
			v.setStatus(v.t("diag.save_failed", map[string]any{"Error": err.Error()}), true)
			return
		}
		if wc == nil {
			return // cancelled
		}
		r := v.r
		v.save.start(func(_ context.Context, run run) {
			err := writeReport(wc, r)
			run.end(func() { v.saved(wc.URI(), err) })
		})
	}, v.win)
	d.SetFileName("cardmail-report.txt")
	d.SetFilter(storage.NewExtensionFileFilter([]string{".txt", ".json"}))
	d.Show()
}

func (v *diagView) saved(u fyne.URI, err error) {
	if err != nil {
		v.setStatus(v.t("diag.save_failed", map[string]any{"Error": err.Error()}), true)
		return
	}
	v.setStatus(v.t("diag.saved", map[string]any{"Path": u.Path()}), false)
}

// reportBytes is the report as saved under name: JSON (one line and a newline) for a ".json" name, else the text.
func reportBytes(r *diagnosis.Report, name string) []byte {
	if strings.EqualFold(filepath.Ext(name), ".json") {
		return append(r.JSON(), '\n')
	}
	return []byte(r.Text())
}

// writeReport writes r to wc (which it closes) in the format its name asks for; a local file is replaced
// atomically (writeURI), so a crash never leaves half a report.
func writeReport(wc fyne.URIWriteCloser, r *diagnosis.Report) error {
	data := reportBytes(r, wc.URI().Name())
	return writeURI(wc, "report", func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// dialogSize is w×h, shrunk to fit the window's canvas with a margin.
func dialogSize(win fyne.Window, w, h float32) fyne.Size {
	c := win.Canvas().Size()
	if c.Width > 0 && c.Width-40 < w {
		w = c.Width - 40
	}
	if c.Height > 0 && c.Height-40 < h {
		h = c.Height - 40
	}
	return fyne.NewSize(w, h)
}

// keys routes Enter and Escape for the focusable widgets of a dialog: Enter runs the default action, Escape
// cancels. Either may be nil.
type keys struct{ enter, escape func() }

// handle runs the action for ev and reports whether it was Enter or Escape with an action.
func (k *keys) handle(ev *fyne.KeyEvent) bool {
	switch ev.Name {
	case fyne.KeyEscape:
		if k.escape != nil {
			k.escape()
			return true
		}
	case fyne.KeyReturn, fyne.KeyEnter:
		if k.enter != nil {
			k.enter()
			return true
		}
	}
	return false
}

// keyEntry is a single-line entry: Enter runs the default action, Escape cancels.
type keyEntry struct {
	widget.Entry
	keys *keys
}

func newKeyEntry(k *keys) *keyEntry {
	e := &keyEntry{keys: k}
	e.ExtendBaseWidget(e)
	e.OnSubmitted = func(string) {
		if k.enter != nil {
			k.enter()
		}
	}
	return e
}

// TypedKey handles Escape; every other key (Enter included, through OnSubmitted) goes to the entry.
func (e *keyEntry) TypedKey(ev *fyne.KeyEvent) {
	if ev.Name == fyne.KeyEscape && e.keys.escape != nil {
		e.keys.escape()
		return
	}
	e.Entry.TypedKey(ev)
}

// keySelect is a drop-down list: Enter runs the default action, Escape cancels; arrows and Space as usual.
type keySelect struct {
	widget.Select
	keys *keys
}

func newKeySelect(k *keys, placeholder string, options []string, changed func(string)) *keySelect {
	s := &keySelect{keys: k}
	s.Options, s.OnChanged, s.PlaceHolder = options, changed, placeholder
	s.ExtendBaseWidget(s)
	return s
}

// TypedKey handles Enter and Escape, then the select's own keys.
func (s *keySelect) TypedKey(ev *fyne.KeyEvent) {
	if !s.keys.handle(ev) {
		s.Select.TypedKey(ev)
	}
}

// keyButton is a button that Enter (as well as Space) activates when focused; Escape cancels.
type keyButton struct {
	widget.Button
	keys *keys
}

func newKeyButton(k *keys, label string, icon fyne.Resource, tapped func()) *keyButton {
	b := &keyButton{keys: k}
	b.Text, b.Icon, b.OnTapped = label, icon, tapped
	b.ExtendBaseWidget(b)
	return b
}

// TypedKey activates the button on Enter or Space, keeping the focus on it (Button.Tapped would drop the focus,
// stranding a keyboard user), and cancels on Escape.
func (b *keyButton) TypedKey(ev *fyne.KeyEvent) {
	switch ev.Name {
	case fyne.KeyReturn, fyne.KeyEnter, fyne.KeySpace:
		if !b.Disabled() && b.OnTapped != nil {
			b.OnTapped()
		}
	case fyne.KeyEscape:
		if b.keys.escape != nil {
			b.keys.escape()
		}
	default:
		b.Button.TypedKey(ev)
	}
}

// keyCheck is a check box (Space toggles it): Enter runs the default action, Escape cancels.
type keyCheck struct {
	widget.Check
	keys *keys
}

func newKeyCheck(k *keys, label string, changed func(bool)) *keyCheck {
	c := &keyCheck{keys: k}
	c.Text, c.OnChanged = label, changed
	c.ExtendBaseWidget(c)
	return c
}

// TypedKey handles Enter and Escape.
func (c *keyCheck) TypedKey(ev *fyne.KeyEvent) {
	if !c.keys.handle(ev) {
		c.Check.TypedKey(ev)
	}
}
