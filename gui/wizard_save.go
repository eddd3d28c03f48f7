package gui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/profile"
)

// savePage names the account and saves it; after a test that did not pass, saving needs "save anyway".
type savePage struct {
	z         *wizard
	name      *keyEntry
	nameErr   *widget.Label
	summary   *widget.Label
	warn      *widget.Label
	anyway    *keyCheck
	err       *widget.Label
	nameTyped bool // the person edited the name: stop suggesting one
	job       *job // the save under way
}

func (p *savePage) build() fyne.CanvasObject {
	z := p.z
	p.name = newKeyEntry(z.keys)
	p.name.OnChanged = func(s string) {
		z.d.Name = strings.TrimSpace(s)
		if !z.filling {
			p.nameTyped = true
		}
		z.update()
	}
	p.nameErr = errorLabel()
	p.summary = wrapped("")
	p.warn = wrapped(z.t("wizard.save.test_failed", nil))
	p.warn.Importance = widget.WarningImportance
	p.anyway = newKeyCheck(z.keys, z.t("wizard.save.anyway", nil), func(bool) { z.update() })
	p.err = errorLabel()
	p.job = z.newJob(wizardSaveTimeout, nil)
	return container.NewVBox(wrapped(z.t("wizard.save.intro", nil)),
		widget.NewForm(widget.NewFormItem(z.t("wizard.save.name", nil), container.NewVBox(p.name, p.nameErr))),
		p.summary, p.warn, p.anyway, p.err)
}

func (p *savePage) first() fyne.Focusable { return p.name }

// enter suggests a name (unless the person typed one) and shows whether "save anyway" is needed.
func (p *savePage) enter() {
	z := p.z
	if !p.nameTyped && z.d.Name == "" {
		z.fill(func() { p.name.SetText(profile.SuggestName(z.d.Address)) })
	}
	c := z.d.candidate()
	p.summary.SetText(z.t("wizard.save.summary", map[string]any{"Address": c.Address,
		"IMAP": fmt.Sprintf("%s:%d", c.IMAP.Host, c.IMAP.Port), "SMTP": fmt.Sprintf("%s:%d", c.SMTP.Host, c.SMTP.Port)}))
	p.err.Hide()
	if z.check.passed() {
		p.warn.Hide()
		p.anyway.Hide()
	} else {
		p.warn.Show()
		p.anyway.Show()
	}
}

// valid: a good name, a passed test or "save anyway", and no save under way.
func (p *savePage) valid() bool {
	return p.validName() && (p.z.check.passed() || p.anyway.Checked) && !p.job.busy()
}

func (p *savePage) validName() bool {
	switch n := p.z.d.Name; {
	case n == "":
		p.z.setReason(p.nameErr, "")
		return false
	case !profile.ValidName(n):
		p.z.setReason(p.nameErr, profile.ReasonBadName)
		return false
	}
	p.z.setReason(p.nameErr, "")
	return true
}

// submit validates the profile and saves it in the background: a new account is created without overwriting any
// other (Store.Create), an edited one saved under another name replaces the old one (Store.Rename), else Save; the
// wizard closes and onSaved runs on success.
func (p *savePage) submit() {
	z := p.z
	prof := z.d.candidate()
	prof.Name = z.d.Name
	var ve *profile.ValidationError
	if err := prof.Validate(); errors.As(err, &ve) {
		p.err.SetText(z.validationText(ve))
		p.err.Show()
		return
	}
	p.err.Hide()
	store, old, isNew := z.deps.Store, z.d.oldName, z.d.oldName == ""
	p.job.start(func(_ context.Context, r run) {
		var err error
		switch {
		case isNew: // never over another profile (also one whose name differs only in case on Windows/macOS)
			err = store.Create(prof)
		case old != prof.Name: // replaces the old one; a system preset of that name stays (it is read-only)
			err = store.Rename(old, prof)
		default:
			err = store.Save(prof)
		}
		r.end(func() { p.saved(prof, err) })
	})
	z.update()
}

func (p *savePage) saved(prof *profile.Profile, err error) {
	z := p.z
	if err != nil {
		var ve *profile.ValidationError
		var ee *profile.ExistsError
		switch {
		case errors.As(err, &ve):
			p.err.SetText(z.validationText(ve))
		case errors.As(err, &ee):
			p.err.SetText(z.t("wizard.save.exists", map[string]any{"Name": ee.Name, "Existing": ee.Existing}))
		default:
			p.err.SetText(z.t("wizard.save.failed", nil) + "\n" + err.Error())
		}
		p.err.Show()
		z.update()
		return
	}
	z.close()
	if z.onSaved != nil {
		z.onSaved(prof)
	}
}
