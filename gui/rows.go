package gui

import (
	"cmp"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// newIconRow is the list row used for accounts and certificates: an icon, a bold title, and a detail below it that
// wraps (or is truncated with an ellipsis when truncate is set).
func newIconRow(icon fyne.Resource, truncate bool) fyne.CanvasObject {
	title := widget.NewLabelWithStyle("title", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	detail := widget.NewLabel("detail")
	if truncate {
		detail.Truncation = fyne.TextTruncateEllipsis
	} else {
		detail.Wrapping = fyne.TextWrapWord
	}
	return container.NewBorder(nil, nil, widget.NewIcon(icon), nil, container.NewVBox(title, detail))
}

// iconRowParts returns the widgets of a row made by newIconRow.
func iconRowParts(o fyne.CanvasObject) (icon *widget.Icon, title, detail *widget.Label) {
	row := o.(*fyne.Container)
	box := row.Objects[0].(*fyne.Container)
	return row.Objects[1].(*widget.Icon), box.Objects[0].(*widget.Label), box.Objects[1].(*widget.Label)
}

// certDetail says which details a certificate row shows besides issuer and validity.
type certDetail struct {
	reader      bool // the reader that holds the card
	usages      bool // key usages and the start of the fingerprint (the picker)
	verdictText bool // "usable for login" on usable certificates too
	greyDetail  bool // grey the detail of unusable certificates, not only the title
}

// fillCertRow shows a certificate in a row made by newIconRow: subject in human form, issuer, validity, and the
// verdict with its reasons; unusable ones greyed.
func fillCertRow(lang words.Lang, c session.CardCert, o fyne.CanvasObject, show certDetail) {
	icon, title, detail := iconRowParts(o)
	d := token.Describe(&c.Certificate)
	t := func(k string, data map[string]any) string { return words.T(lang, k, data) }
	lines := []string{t("cert.issuer", map[string]any{"Issuer": d.Issuer})}
	if len(d.NotAfter) >= 10 {
		lines = append(lines, t("cert.valid_until", map[string]any{"Date": d.NotAfter[:10]}))
	}
	if show.reader {
		lines = append(lines, c.Reader)
	}
	if show.usages {
		if len(d.KeyUsage)+len(d.ExtKeyUsage) > 0 {
			usages := strings.Join(append(slices.Clone(d.KeyUsage), d.ExtKeyUsage...), ", ")
			lines = append(lines, t("picker.usages", map[string]any{"Usages": usages}))
		}
		lines = append(lines, "SHA-256 "+d.SHA256Colons[:23]+"…")
	}
	importance := widget.MediumImportance
	if d.Usable {
		icon.SetResource(theme.ConfirmIcon())
		if show.verdictText {
			lines = append(lines, t("cert.usable", nil))
		}
	} else {
		icon.SetResource(theme.CancelIcon())
		lines = append(lines, t("cert.unusable_because", map[string]any{"Reasons": reasonsText(lang, d.Reasons)}))
		importance = widget.LowImportance
	}
	title.Importance = importance
	if show.greyDetail {
		detail.Importance = importance
	}
	title.SetText(cmp.Or(d.Subject, c.Label))
	detail.SetText(strings.Join(lines, "\n"))
}

// reasonsText joins the translated reasons why a certificate is not usable.
func reasonsText(lang words.Lang, rs []token.Reason) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = words.T(lang, "reason."+string(r), nil)
	}
	return strings.Join(out, ", ")
}
