package gui

import (
	"context"
	"errors"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// certPage reads the certificates of the present cards (in the background, on every arrival and on Retry), picks
// the one that fits by itself when there is exactly one, and lets the person pick another.
type certPage struct {
	z      *wizard
	certs  []session.CardCert
	label  *widget.Label
	status *widget.Label
	bar    *widget.ProgressBarInfinite
	pick   *keyButton
	retry  *keyButton
	load   *job
}

func (p *certPage) build() fyne.CanvasObject {
	z := p.z
	p.label = wrapped("")
	p.label.TextStyle.Bold = true
	p.status = wrapped("")
	p.bar = widget.NewProgressBarInfinite()
	p.bar.Stop()
	p.bar.Hide()
	p.pick = newKeyButton(z.keys, z.t("wizard.cert.pick", nil), theme.AccountIcon(), p.pickCert)
	p.retry = newKeyButton(z.keys, z.t("wizard.cert.retry", nil), theme.ViewRefreshIcon(), p.reload)
	p.load = z.newJob(wizardCertsTimeout, func(on bool) {
		if on {
			p.bar.Show()
			p.bar.Start()
			p.status.SetText(z.t("certs.loading", nil))
			p.pick.Disable()
			p.retry.Disable()
		} else {
			p.bar.Stop()
			p.bar.Hide()
			p.retry.Enable()
		}
	})
	return container.NewVBox(wrapped(z.t("wizard.cert.intro", nil)), p.bar, p.status, p.label,
		container.NewHBox(p.pick, p.retry))
}

func (p *certPage) first() fyne.Focusable { return p.pick }

// enter reads the cards again, unless a reading is under way.
func (p *certPage) enter() {
	if !p.load.busy() {
		p.reload()
	}
}

// valid: a certificate is chosen, or the login does not use the card.
func (p *certPage) valid() bool {
	l := p.z.d.Login
	return p.z.d.CertSHA256 != "" || l == profile.LoginLogin || l == profile.LoginPlain
}

// reload reads the certificates of the present cards in the background and auto-selects the one that fits.
func (p *certPage) reload() {
	certs := p.z.deps.Certs
	p.load.start(func(ctx context.Context, r run) {
		cs, err := certs(ctx)
		r.end(func() { p.loaded(cs, err) })
	})
	p.z.update()
}

func (p *certPage) loaded(cs []session.CardCert, err error) {
	z := p.z
	p.certs = cs
	switch {
	case errors.Is(err, session.ErrCardAbsent) || (err == nil && len(cs) == 0):
		p.status.SetText(z.t("wizard.cert.no_card", nil))
	case err != nil:
		message, remedy := explainError(z.lang, err)
		p.status.SetText(message + "\n" + remedy)
	default:
		p.status.SetText(z.t("wizard.cert.found", map[string]any{"N": len(cs)}))
		p.pick.Enable()
		if !slices.ContainsFunc(cs, func(c session.CardCert) bool { return c.Fingerprint() == z.d.CertSHA256 }) {
			if c, ok := AutoPick(cs); ok {
				z.d.CertSHA256 = c.Fingerprint()
			}
		}
	}
	p.showChosen()
	z.update()
	if z.page == pageCert {
		z.focusFirst()
	}
}

func (p *certPage) pickCert() {
	ShowCertPicker(p.z.win, p.z.lang, p.certs, p.z.d.CertSHA256, func(c session.CardCert) {
		p.choose(c.Fingerprint())
		p.z.update()
	})
}

// choose makes the certificate with this hex SHA-256 the chosen one.
func (p *certPage) choose(sha256 string) {
	p.z.d.CertSHA256 = strings.ToLower(sha256)
	p.showChosen()
}

// showChosen describes the chosen certificate (from the present cards when it is there, else by fingerprint).
func (p *certPage) showChosen() {
	z := p.z
	chosen := z.d.CertSHA256
	if chosen == "" {
		p.label.SetText(z.t("wizard.cert.none_chosen", nil))
		return
	}
	for _, c := range p.certs {
		if c.Fingerprint() == chosen {
			d := token.Describe(&c.Certificate)
			text := z.t("wizard.cert.chosen", map[string]any{"Subject": d.Subject, "Issuer": d.Issuer})
			if len(d.NotAfter) >= 10 {
				text += "\n" + z.t("cert.valid_until", map[string]any{"Date": d.NotAfter[:10]})
			}
			p.label.SetText(text)
			return
		}
	}
	p.label.SetText(z.t("wizard.cert.chosen_absent", map[string]any{"SHA256": chosen[:16] + "…"}))
}
