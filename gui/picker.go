package gui

import (
	"slices"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// AutoPick returns the one usable certificate when exactly one fits, so the picker need not be shown.
func AutoPick(certs []session.CardCert) (session.CardCert, bool) {
	var found []session.CardCert
	for _, c := range certs {
		if c.Verdict.Usable {
			found = append(found, c)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return session.CardCert{}, false
}

// certPicker is the certificate picker dialog. UI goroutine only.
type certPicker struct {
	lang     words.Lang
	certs    []session.CardCert // usable first
	selected int
	list     *widget.List
	choose   *widget.Button
	details  *widget.Button
	dlg      *dialog.CustomDialog
	win      fyne.Window
	onChoose func(session.CardCert)
}

// ShowCertPicker shows the certificates of the present cards, usable ones first, and calls onChoose with the one
// the person picks (not called on cancel). The certificate whose hex SHA-256 is current is preselected; otherwise,
// when exactly one certificate fits, it is.
func ShowCertPicker(w fyne.Window, lang words.Lang, certs []session.CardCert, current string,
	onChoose func(session.CardCert)) {
	p := newCertPicker(w, lang, certs, current, onChoose)
	p.dlg.Show()
}

func newCertPicker(w fyne.Window, lang words.Lang, certs []session.CardCert, current string,
	onChoose func(session.CardCert)) *certPicker {
	p := &certPicker{lang: lang, certs: slices.Clone(certs), selected: -1, win: w, onChoose: onChoose}
	slices.SortStableFunc(p.certs, func(a, b session.CardCert) int {
		switch {
		case a.Verdict.Usable == b.Verdict.Usable:
			return 0
		case a.Verdict.Usable:
			return -1
		}
		return 1
	})
	t := p.t
	p.list = widget.NewList(func() int { return len(p.certs) }, p.newRow, p.fillRow)
	p.list.OnSelected = func(i widget.ListItemID) {
		p.selected = i
		p.update()
	}
	p.choose = widget.NewButtonWithIcon(t("picker.choose", nil), theme.ConfirmIcon(), p.pick)
	p.choose.Importance = widget.HighImportance
	p.details = widget.NewButtonWithIcon(t("picker.details", nil), theme.InfoIcon(), p.showDetails)
	cancel := widget.NewButtonWithIcon(t("pin.cancel", nil), theme.CancelIcon(), func() { p.dlg.Hide() })

	var body fyne.CanvasObject = p.list
	if len(p.certs) == 0 {
		body = widget.NewLabel(t("certs.none", nil))
	}
	p.dlg = dialog.NewCustomWithoutButtons(t("picker.title", nil), container.NewBorder(
		widget.NewLabel(t("picker.intro", nil)), nil, nil, nil, body), w)
	p.dlg.SetButtons([]fyne.CanvasObject{cancel, p.details, p.choose})
	p.dlg.Resize(fyne.NewSize(640, 440))

	want := strings.ToLower(strings.ReplaceAll(current, ":", ""))
	for i := range p.certs {
		if want != "" && p.certs[i].Fingerprint() == want {
			p.selected = i
		}
	}
	if p.selected < 0 {
		if c, ok := AutoPick(p.certs); ok {
			p.selected = slices.IndexFunc(p.certs, func(x session.CardCert) bool { return x.SHA256 == c.SHA256 })
		}
	}
	if p.selected >= 0 {
		p.list.Select(p.selected)
	}
	p.update()
	return p
}

func (p *certPicker) t(key string, data map[string]any) string { return words.T(p.lang, key, data) }

func (p *certPicker) newRow() fyne.CanvasObject { return newIconRow(theme.ConfirmIcon(), false) }

func (p *certPicker) fillRow(i widget.ListItemID, o fyne.CanvasObject) {
	if i >= len(p.certs) {
		return
	}
	fillCertRow(p.lang, p.certs[i], o, certDetail{usages: true, greyDetail: true})
	p.list.SetItemHeight(i, o.MinSize().Height)
}

// update enables Choose only for a usable selection, Details for any selection.
func (p *certPicker) update() {
	if p.selected >= 0 && p.selected < len(p.certs) {
		p.details.Enable()
		if p.certs[p.selected].Verdict.Usable {
			p.choose.Enable()
			return
		}
	} else {
		p.details.Disable()
	}
	p.choose.Disable()
}

func (p *certPicker) pick() {
	if p.selected < 0 || !p.certs[p.selected].Verdict.Usable {
		return
	}
	p.dlg.Hide()
	p.onChoose(p.certs[p.selected])
}

// showDetails shows every field of the selected certificate in a second dialog.
func (p *certPicker) showDetails() {
	if p.selected < 0 {
		return
	}
	c := p.certs[p.selected]
	d := token.Describe(&c.Certificate)
	form := widget.NewForm(
		widget.NewFormItem(p.t("picker.f_subject", nil), wrapLabel(d.SubjectDN)),
		widget.NewFormItem(p.t("picker.f_issuer", nil), wrapLabel(d.IssuerDN)),
		widget.NewFormItem(p.t("picker.f_email", nil), wrapLabel(d.Email)),
		widget.NewFormItem(p.t("picker.f_validity", nil), wrapLabel(d.NotBefore+" → "+d.NotAfter)),
		widget.NewFormItem(p.t("picker.f_key", nil), wrapLabel(d.KeyType+" "+strconv.Itoa(d.KeyBits))),
		widget.NewFormItem(p.t("picker.f_usages", nil), wrapLabel(strings.Join(append(slices.Clone(d.KeyUsage), d.ExtKeyUsage...), ", "))),
		widget.NewFormItem(p.t("picker.f_serial", nil), wrapLabel(d.Serial)),
		widget.NewFormItem("SHA-256", wrapLabel(d.SHA256Colons)),
		widget.NewFormItem(p.t("picker.f_card", nil), wrapLabel(c.Reader+" — "+c.TokenLabel)),
	)
	if !d.Usable {
		form.Append(p.t("cert.unusable", nil), wrapLabel(reasonsText(p.lang, d.Reasons)))
	}
	dd := dialog.NewCustom(p.t("picker.details", nil), p.t("picker.close", nil), container.NewVScroll(form), p.win)
	dd.Resize(fyne.NewSize(620, 420))
	dd.Show()
}

func wrapLabel(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapBreak
	return l
}
