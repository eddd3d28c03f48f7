package gui

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/profile"
)

// Provider choices besides the built-in presets.
const (
	choiceAuto   = "auto"
	choiceManual = "manual"
)

// providerPage chooses where the server settings come from: a built-in preset, autoconfiguration (in the
// background, with Stop) or the person's own typing. Every choice fills the servers page.
type providerPage struct {
	z        *wizard
	list     *keySelect
	choices  []string // choice ids, parallel to list.Options
	info     *widget.Label
	bar      *widget.ProgressBarInfinite
	stop     *keyButton
	discover *job
	// outside warns that DNS SRV records point outside the mail domain (both names shown, in a label that wraps
	// however long they are); confirm must then be ticked before going on.
	outside *widget.Label
	confirm *keyCheck
}

func (p *providerPage) build() fyne.CanvasObject {
	z := p.z
	var labels []string
	for _, pr := range profile.Presets() {
		p.choices = append(p.choices, string(pr.ID))
		labels = append(labels, z.t("profile.preset."+string(pr.ID), nil))
	}
	p.choices = append(p.choices, choiceAuto, choiceManual)
	labels = append(labels, z.t("wizard.provider.auto", nil), z.t("wizard.provider.manual", nil))
	p.list = newKeySelect(z.keys, z.t("wizard.choose", nil), labels, func(string) { p.changed() })
	p.info = wrapped("")
	p.bar = widget.NewProgressBarInfinite()
	p.bar.Stop()
	p.bar.Hide()
	p.stop = newKeyButton(z.keys, z.t("wizard.stop", nil), theme.CancelIcon(), func() { p.discover.stop() })
	p.stop.Hide()
	p.discover = z.newJob(wizardDiscoverTimeout, func(on bool) {
		if on {
			p.bar.Show()
			p.bar.Start()
			p.stop.Show()
		} else {
			p.bar.Stop()
			p.bar.Hide()
			p.stop.Hide()
		}
	})
	p.outside = wrapped("")
	p.outside.Importance = widget.WarningImportance
	p.outside.Hide()
	p.confirm = newKeyCheck(z.keys, "", func(bool) { z.update() })
	p.confirm.Hide()
	return container.NewVBox(wrapped(z.t("wizard.provider.intro", nil)),
		widget.NewForm(widget.NewFormItem(z.t("wizard.provider.label", nil), p.list)),
		p.bar, p.stop, p.info, p.outside, p.confirm)
}

func (p *providerPage) enter()                {}
func (p *providerPage) first() fyne.Focusable { return p.list }

// valid: a choice, no search under way, and servers outside the mail domain confirmed.
func (p *providerPage) valid() bool {
	return p.z.d.choice != "" && !p.discover.busy() && (!p.confirm.Visible() || p.confirm.Checked)
}

// askConfirmation shows the warning about hosts outside domain and the check box that accepts them; no hosts hides
// both.
func (p *providerPage) askConfirmation(domain string, hosts []string) {
	p.confirm.SetChecked(false)
	if len(hosts) == 0 {
		p.outside.Hide()
		p.confirm.Hide()
		return
	}
	data := map[string]any{"Domain": domain, "Hosts": strings.Join(hosts, ", ")}
	p.outside.SetText(p.z.t("wizard.discover.outside", data))
	p.confirm.Text = p.z.t("wizard.discover.confirm", data)
	p.confirm.Refresh()
	p.outside.Show()
	p.confirm.Show()
}

// changed follows the person's choice.
func (p *providerPage) changed() {
	z := p.z
	i := p.list.SelectedIndex()
	if i < 0 || z.filling {
		return
	}
	z.d.choice = p.choices[i]
	p.discover.drop()
	p.askConfirmation("", nil)
	z.d.guessed = [2]string{}
	switch z.d.choice {
	case choiceAuto:
		p.startDiscover()
	case choiceManual:
		p.info.SetText(z.t("wizard.provider.manual_info", nil))
		p.applyManual()
	default:
		if pr, ok := profile.PresetByID(profile.PresetID(z.d.choice)); ok {
			p.applyPreset(pr)
		}
	}
	z.update()
}

// selectChoice shows choice in the list without reacting to it.
func (p *providerPage) selectChoice(choice string) {
	p.z.d.choice = choice
	p.z.fill(func() { p.list.SetSelectedIndex(slices.Index(p.choices, choice)) })
}

// applyPreset fills the servers page from a preset, with the host names guessed from the address, and says what
// the preset does, which other security mode it allows, and that the host names are guesses to check.
func (p *providerPage) applyPreset(pr profile.Preset) {
	z := p.z
	prof, err := profile.FromPreset(pr, z.d.Address)
	if err != nil { // the address page is valid before this page, so this is a preset bug
		prof = &profile.Profile{IMAP: pr.IMAP, SMTP: pr.SMTP, Login: pr.Login, TLSPolicy: pr.TLSPolicy}
	}
	z.servers.fill(prof.IMAP, prof.SMTP, prof.Login, prof.TLSPolicy)
	z.d.guessed = [2]string{prof.IMAP.Host, prof.SMTP.Host}
	lines := []string{z.t("wizard.provider.info."+string(pr.ID), nil)}
	if alt := pr.Alternative; alt != "" {
		lines = append(lines, z.t("wizard.provider.alternative", map[string]any{
			"Security": z.t("wizard.security."+string(alt), nil),
			"IMAP":     profile.StandardPort(profile.ProtocolIMAP, alt), "SMTP": profile.StandardPort(profile.ProtocolSMTP, alt)}))
	}
	if prof.IMAP.Host != "" {
		lines = append(lines, z.t("wizard.provider.guessed", map[string]any{"IMAP": prof.IMAP.Host, "SMTP": prof.SMTP.Host}))
	}
	p.info.SetText(strings.Join(lines, "\n"))
}

// applyManual keeps the generic preset's ports and modes and empties the host names for the person to type.
func (p *providerPage) applyManual() {
	pr, _ := profile.PresetByID(profile.PresetGeneric)
	imap, smtp := pr.IMAP, pr.SMTP
	imap.Host, smtp.Host = "", ""
	p.z.servers.fill(imap, smtp, pr.Login, pr.TLSPolicy)
}

func (p *providerPage) startDiscover() {
	z := p.z
	addr := z.d.Address
	p.info.SetText(z.t("wizard.discover.running", map[string]any{"Domain": domainOf(addr)}))
	mail := z.deps.Mail
	p.discover.start(func(ctx context.Context, r run) {
		res, err := mail.Discover(ctx, addr)
		stopped := errors.Is(ctx.Err(), context.Canceled)
		r.end(func() { p.discovered(res, err, stopped) })
	})
}

// discovered shows what autoconfiguration found (and fills the servers), or why it failed (and falls back to manual).
func (p *providerPage) discovered(res *autoconfig.Result, err error, stopped bool) {
	z := p.z
	if err == nil && res != nil && (len(res.IMAP) > 0 || len(res.SMTP) > 0) {
		p.applyDiscovered(res)
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
		p.info.SetText(z.t(key, map[string]any{"Domain": domainOf(z.d.Address)}) + "\n" +
			z.t("wizard.discover.fallback", nil))
		p.selectChoice(choiceManual)
		p.applyManual()
	}
	z.update()
}

func (p *providerPage) applyDiscovered(res *autoconfig.Result) {
	z := p.z
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
		imap = res.IMAP[0].Server
	}
	if len(res.SMTP) > 0 {
		smtp = res.SMTP[0].Server
	}
	z.servers.fill(imap, smtp, generic.Login, generic.TLSPolicy)
	p.info.SetText(z.t("wizard.discover.found", map[string]any{
		"Source": z.t("wizard.source."+string(res.Source), nil), "Target": res.Target,
		"IMAP": describe(res.IMAP), "SMTP": describe(res.SMTP)}))
	// DNS answers are not authenticated: a server outside the mail domain needs the person's word (RFC 6186 §6).
	var outside []string
	for _, s := range [][]autoconfig.Server{res.IMAP, res.SMTP} {
		if len(s) > 0 && s[0].OutsideDomain && !slices.Contains(outside, s[0].Host) {
			outside = append(outside, s[0].Host)
		}
	}
	p.askConfirmation(cmp.Or(res.Domain, domainOf(z.d.Address)), outside)
}
