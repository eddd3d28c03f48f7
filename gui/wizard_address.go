package gui

import (
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/profile"
)

// addressPage asks for the mailbox address.
type addressPage struct {
	z     *wizard
	entry *keyEntry
	err   *widget.Label
}

func (p *addressPage) build() fyne.CanvasObject {
	z := p.z
	p.entry = newKeyEntry(z.keys)
	p.entry.SetPlaceHolder(z.t("wizard.address.placeholder", nil))
	p.entry.OnChanged = func(s string) {
		z.d.Address = strings.TrimSpace(s)
		z.update()
	}
	p.err = errorLabel()
	return container.NewVBox(wrapped(z.t("wizard.address.intro", nil)),
		widget.NewForm(widget.NewFormItem(z.t("wizard.address.label", nil), container.NewVBox(p.entry, p.err))))
}

func (p *addressPage) enter()                {}
func (p *addressPage) first() fyne.Focusable { return p.entry }

// valid: an address profile.SplitAddress accepts; an empty field is not an error yet.
func (p *addressPage) valid() bool {
	reason := ""
	switch a := p.z.d.Address; {
	case a == "":
		reason = profile.ReasonMissing
	default:
		if _, _, ok := profile.SplitAddress(a); !ok {
			reason = profile.ReasonBadAddress
		}
	}
	if reason == profile.ReasonMissing {
		p.z.setReason(p.err, "")
	} else {
		p.z.setReason(p.err, reason)
	}
	return reason == ""
}

// domainOf is the domain of an address, "" when it has none.
func domainOf(addr string) string {
	_, d, _ := profile.SplitAddress(addr)
	return d
}
