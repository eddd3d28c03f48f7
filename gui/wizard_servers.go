package gui

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/profile"
)

// The choices of the servers page's lists, in the order shown.
var (
	securities = []profile.Security{profile.Implicit, profile.StartTLS}
	logins     = []profile.Login{profile.LoginAuto, profile.LoginExternal, profile.LoginLogin, profile.LoginPlain}
	policies   = []profile.TLSPolicy{profile.PolicyDefault, profile.PolicyMSSante}
)

// serversPage shows and edits both servers, the login method, the TLS policy and the extra CA files.
type serversPage struct {
	z      *wizard
	srv    [2]serverFields // imap, smtp
	login  *keySelect
	policy *keySelect
	caBox  *fyne.Container
	caAdd  *keyButton
	err    *widget.Label
}

// serverFields are the widgets of one server (IMAP or SMTP).
type serverFields struct {
	protocol string
	host     *keyEntry
	hostErr  *widget.Label
	guess    *widget.Label // the host name is a guess to check
	port     *keyEntry
	portErr  *widget.Label
	security *keySelect
}

// server is the draft's server that the fields srv[i] edit.
func (p *serversPage) server(i int) *profile.Server {
	if i == 0 {
		return &p.z.d.IMAP
	}
	return &p.z.d.SMTP
}

func (p *serversPage) build() fyne.CanvasObject {
	z := p.z
	secLabels := labelsOf(z, "wizard.security.", securities)
	form := widget.NewForm()
	for i, proto := range []string{profile.ProtocolIMAP, profile.ProtocolSMTP} {
		f, s := &p.srv[i], p.server(i)
		f.protocol = proto
		f.host = newKeyEntry(z.keys)
		f.host.SetPlaceHolder(z.t("wizard.servers.host_placeholder", nil))
		f.host.OnChanged = func(text string) {
			s.Host = strings.TrimSpace(text)
			z.update()
		}
		f.hostErr = errorLabel()
		f.guess = wrapped(z.t("wizard.servers.guessed", nil))
		f.guess.Importance = widget.WarningImportance
		f.guess.Hide()
		f.port = newKeyEntry(z.keys)
		f.port.OnChanged = func(text string) {
			s.Port, _ = strconv.Atoi(strings.TrimSpace(text))
			z.update()
		}
		f.portErr = errorLabel()
		f.security = newKeySelect(z.keys, z.t("wizard.choose", nil), secLabels, func(string) {
			j := f.security.SelectedIndex()
			if j < 0 {
				return
			}
			s.Security = securities[j]
			if z.filling {
				return
			}
			f.port.SetText(strconv.Itoa(profile.StandardPort(f.protocol, s.Security)))
			z.update()
		})
		form.Append(z.t("wizard.servers."+proto+"_host", nil), container.NewVBox(f.host, f.hostErr, f.guess))
		form.Append(z.t("wizard.servers.security", nil), f.security)
		form.Append(z.t("wizard.servers.port", nil), container.NewVBox(f.port, f.portErr))
	}
	p.login = newKeySelect(z.keys, z.t("wizard.choose", nil), labelsOf(z, "wizard.login.", logins), func(string) {
		if i := p.login.SelectedIndex(); i >= 0 {
			z.d.Login = logins[i]
		}
		z.update()
	})
	p.policy = newKeySelect(z.keys, z.t("wizard.choose", nil), labelsOf(z, "wizard.policy.", policies), func(string) {
		if i := p.policy.SelectedIndex(); i >= 0 {
			z.d.TLSPolicy = policies[i]
		}
		z.update()
	})
	p.caBox = container.NewVBox()
	p.caAdd = newKeyButton(z.keys, z.t("wizard.servers.ca_add", nil), theme.ContentAddIcon(), p.chooseCAFile)
	form.Append(z.t("wizard.servers.login", nil), p.login)
	form.Append(z.t("wizard.servers.policy", nil), p.policy)
	form.Append(z.t("wizard.servers.ca_files", nil), container.NewVBox(p.caBox, container.NewHBox(p.caAdd)))
	p.err = errorLabel()
	return container.NewVScroll(container.NewVBox(form, p.err))
}

// labelsOf returns the words "<prefix><value>" of each value, in order (the options of a list).
func labelsOf[T ~string](z *wizard, prefix string, values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = z.t(prefix+string(v), nil)
	}
	return out
}

func (p *serversPage) enter()                {}
func (p *serversPage) first() fyne.Focusable { return p.srv[0].host }

// fill shows a server configuration on the page (and so in the draft).
func (p *serversPage) fill(imap, smtp profile.Server, login profile.Login, policy profile.TLSPolicy) {
	p.z.fill(func() {
		for i, s := range []profile.Server{imap, smtp} {
			f := &p.srv[i]
			f.host.SetText(s.Host)
			if s.Port > 0 {
				f.port.SetText(strconv.Itoa(s.Port))
			} else {
				f.port.SetText("")
			}
			f.security.SetSelectedIndex(slices.Index(securities, s.Security))
		}
		p.login.SetSelectedIndex(slices.Index(logins, login))
		p.policy.SetSelectedIndex(slices.Index(policies, policy))
	})
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

// valid shows the reason under each wrong field, then checks the whole candidate profile (for what has no field of
// its own, such as the CA file paths).
func (p *serversPage) valid() bool {
	z := p.z
	ok := true
	for i := range p.srv {
		f := &p.srv[i]
		hr := hostReason(strings.TrimSpace(f.host.Text))
		pr := portReason(strings.TrimSpace(f.port.Text))
		z.setReason(f.hostErr, hr)
		z.setReason(f.portErr, pr)
		if g := z.d.guessed[i]; hr == "" && g != "" && strings.EqualFold(p.server(i).Host, g) {
			f.guess.Show()
		} else {
			f.guess.Hide()
		}
		ok = ok && hr == "" && pr == "" && f.security.SelectedIndex() >= 0
	}
	ok = ok && p.login.SelectedIndex() >= 0 && p.policy.SelectedIndex() >= 0
	p.err.Hide()
	if ok {
		var ve *profile.ValidationError
		if err := z.d.candidate().Validate(); errors.As(err, &ve) {
			p.err.SetText(z.validationText(ve))
			p.err.Show()
			return false
		}
	}
	return ok
}

func (p *serversPage) chooseCAFile() {
	d := dialog.NewFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil || rc == nil {
			return
		}
		path := rc.URI().Path()
		_ = rc.Close()
		p.addCAFile(path)
	}, p.z.win)
	d.Show()
}

// setCAFiles replaces the list of CA files.
func (p *serversPage) setCAFiles(paths []string) {
	p.z.d.CAFiles = slices.Clone(paths)
	p.showCAFiles()
}

// addCAFile adds a CA file path (once) to the list.
func (p *serversPage) addCAFile(path string) {
	if path != "" && !slices.Contains(p.z.d.CAFiles, path) {
		p.z.d.CAFiles = append(p.z.d.CAFiles, path)
	}
	p.showCAFiles()
	p.z.update()
}

func (p *serversPage) removeCAFile(path string) {
	p.z.d.CAFiles = slices.DeleteFunc(p.z.d.CAFiles, func(f string) bool { return f == path })
	p.showCAFiles()
	p.z.update()
}

func (p *serversPage) showCAFiles() {
	z := p.z
	var rows []fyne.CanvasObject
	for _, f := range z.d.CAFiles {
		rm := newKeyButton(z.keys, z.t("wizard.servers.ca_remove", nil), theme.DeleteIcon(), func() { p.removeCAFile(f) })
		rows = append(rows, container.NewBorder(nil, nil, nil, rm, wrapLabel(f)))
	}
	if len(rows) == 0 {
		none := widget.NewLabel(z.t("wizard.servers.ca_none", nil))
		none.Importance = widget.LowImportance
		rows = append(rows, none)
	}
	p.caBox.Objects = rows
	p.caBox.Refresh()
}
