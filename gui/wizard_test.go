package gui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// fakeStore is an AccountStore in memory.
type fakeStore struct {
	mu      sync.Mutex
	saved   []*profile.Profile
	deleted []string
	saveErr error
}

func (s *fakeStore) List() ([]profile.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []profile.Entry
	for _, p := range s.saved {
		out = append(out, profile.Entry{Name: p.Name, Scope: profile.ScopeUser, Profile: p.Clone()})
	}
	return out, nil
}

func (s *fakeStore) Save(p *profile.Profile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saveErr != nil {
		return s.saveErr
	}
	if err := p.Validate(); err != nil {
		return err
	}
	s.saved = append(s.saved, p.Clone())
	return nil
}

func (s *fakeStore) Create(p *profile.Profile) error {
	s.mu.Lock()
	for _, q := range s.saved {
		if strings.EqualFold(q.Name, p.Name) {
			s.mu.Unlock()
			return &profile.ExistsError{Name: p.Name, Existing: q.Name}
		}
	}
	s.mu.Unlock()
	return s.Save(p)
}

func (s *fakeStore) Rename(old string, p *profile.Profile) error {
	if err := s.Save(p); err != nil {
		return err
	}
	return s.Delete(old)
}

func (s *fakeStore) Delete(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = append(s.deleted, name)
	return nil
}

// fakeMail is a MailService whose Check and Discover are scripted by the test.
type fakeMail struct {
	mu       sync.Mutex
	check    func(ctx context.Context, p *profile.Profile, protocol string, progress func(diagnosis.Step)) *diagnosis.Report
	discover func(ctx context.Context, address string) (*autoconfig.Result, error)
	checked  []string // protocols checked, in order
	profiles []*profile.Profile
}

func (m *fakeMail) Check(ctx context.Context, p *profile.Profile, protocol string, progress func(diagnosis.Step)) *diagnosis.Report {
	m.mu.Lock()
	m.checked = append(m.checked, protocol)
	m.profiles = append(m.profiles, p.Clone())
	fn := m.check
	m.mu.Unlock()
	return fn(ctx, p, protocol, progress)
}

func (m *fakeMail) Folders(context.Context, *profile.Profile) ([]mail.Folder, error) {
	return nil, errors.New("fakeMail: Folders not used by the wizard")
}

func (m *fakeMail) Headers(context.Context, *profile.Profile, string, int, int) ([]mail.Header, int, error) {
	return nil, 0, errors.New("fakeMail: Headers not used by the wizard")
}

func (m *fakeMail) Message(context.Context, *profile.Profile, mail.MessageRef) (*mail.Message, error) {
	return nil, errors.New("fakeMail: Message not used by the wizard")
}

func (m *fakeMail) Attachment(context.Context, *profile.Profile, mail.MessageRef, []int, io.Writer) (int64, error) {
	return 0, errors.New("fakeMail: Attachment not used by the wizard")
}

func (m *fakeMail) SendTest(context.Context, *profile.Profile, string) (*mail.Sent, error) {
	return nil, errors.New("fakeMail: SendTest not used by the wizard")
}

func (m *fakeMail) Discover(ctx context.Context, address string) (*autoconfig.Result, error) {
	m.mu.Lock()
	fn := m.discover
	m.mu.Unlock()
	if fn == nil {
		return nil, errors.New("fakeMail: no discover script")
	}
	return fn(ctx, address)
}

func (m *fakeMail) protocols() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.checked)
}

// okSteps is a successful ladder for protocol.
func okSteps(protocol string) []diagnosis.Step {
	last := diagnosis.StepList
	if protocol == diagnosis.ProtocolSMTP {
		last = diagnosis.StepSend
	}
	return []diagnosis.Step{
		{Name: diagnosis.StepDNS, OK: true, Ms: 1, Detail: "127.0.0.1"},
		{Name: diagnosis.StepConnect, OK: true, Ms: 2},
		{Name: diagnosis.StepTLS, OK: true, Ms: 15, Detail: "TLS 1.2"},
		{Name: diagnosis.StepClientCert, OK: true, Ms: 40},
		{Name: diagnosis.StepGreeting, OK: true, Ms: 1},
		{Name: diagnosis.StepAuth, OK: true, Ms: 3, Detail: "EXTERNAL"},
		{Name: last, OK: true, Ms: 2},
	}
}

// checkOK reports every step through progress, then success.
func checkOK(_ context.Context, _ *profile.Profile, protocol string, progress func(diagnosis.Step)) *diagnosis.Report {
	steps := okSteps(protocol)
	for _, s := range steps {
		progress(s)
	}
	return &diagnosis.Report{OK: true, Code: diagnosis.OK, Steps: steps}
}

// untrustedReport is a failed IMAP check: the server certificate comes from an unknown authority.
func untrustedReport() *diagnosis.Report {
	return &diagnosis.Report{Code: diagnosis.ServerCertUntrusted,
		Steps: []diagnosis.Step{
			{Name: diagnosis.StepDNS, OK: true, Ms: 1, Detail: "127.0.0.1"},
			{Name: diagnosis.StepConnect, OK: true, Ms: 2},
			{Name: diagnosis.StepTLS, OK: false, Ms: 9, Detail: "x509: certificate signed by unknown authority"},
		},
		TLS: diagnosis.TLSFacts{ServerChain: []diagnosis.CertFacts{{Subject: "CN=imap.sante.example",
			Issuer: "CN=Rogue CA", NotAfter: "2030-01-01T00:00:00Z", SHA256: strings.Repeat("ab", 32)}}},
		Err: errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"),
	}
}

// fixedCert is a card certificate with fixed dates (goldens show them), usable unless expired.
func fixedCert(t *testing.T, cn string, expired bool) session.CardCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2099, 12, 31, 0, 0, 0, 0, time.UTC)
	if expired {
		notAfter = time.Date(2020, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		Issuer: pkix.Name{CommonName: cn}, NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := token.Certificate{ID: []byte{1}, DER: der, Cert: x, HasPrivateKey: true, KeyType: "ECDSA", KeyBits: 256,
		SHA256: sha256.Sum256(der)}
	c.Verdict = token.Evaluate(&c, time.Now())
	return session.CardCert{Certificate: c, Reader: "Reader 0"}
}

// wizardRig is one wizard on a test window with fakes behind it.
type wizardRig struct {
	z     *wizard
	win   fyne.Window
	store *fakeStore
	mail  *fakeMail
	saved []*profile.Profile

	mu   sync.Mutex
	gate chan struct{} // background work waits for it to be closed (see wizard.hook)
}

// open lets the background work run.
func (r *wizardRig) open() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.gate:
	default:
		close(r.gate)
	}
}

func (r *wizardRig) wait() {
	r.mu.Lock()
	g := r.gate
	r.mu.Unlock()
	<-g
}

func newRig(t *testing.T, lang words.Lang, certs func(context.Context) ([]session.CardCert, error), existing *profile.Profile) *wizardRig {
	t.Helper()
	a := test.NewTempApp(t)
	w := a.NewWindow("t")
	w.SetContent(widget.NewLabel(""))
	w.Resize(fyne.NewSize(800, 640))
	r := &wizardRig{win: w, store: &fakeStore{}, mail: &fakeMail{check: checkOK}, gate: make(chan struct{})}
	deps := WizardDeps{Store: r.store, Mail: r.mail, Certs: certs}
	r.z = newWizard(w, lang, deps, existing, func(p *profile.Profile) { r.saved = append(r.saved, p) })
	r.z.hook = r.wait
	r.z.show()
	t.Cleanup(func() {
		r.z.close()
		r.open()
		r.z.bg.Wait()
	})
	return r
}

// press sends a key the way the desktop driver does: to the focused widget, else to the canvas handler.
func press(c fyne.Canvas, name fyne.KeyName) {
	ev := &fyne.KeyEvent{Name: name}
	if f := c.Focused(); f != nil {
		f.TypedKey(ev)
		return
	}
	if h := c.OnTypedKey(); h != nil {
		h(ev)
	}
}

// settle lets the wizard's background work run and waits for it; the test driver runs fyne.Do inline, so the UI is
// up to date after.
func (r *wizardRig) settle() {
	r.open()
	r.z.bg.Wait()
	r.mu.Lock()
	r.gate = make(chan struct{})
	r.mu.Unlock()
}

func (r *wizardRig) wantPage(t *testing.T, page int) {
	t.Helper()
	if r.z.page != page {
		t.Fatalf("on page %s, want %s", pageKeys[r.z.page], pageKeys[page])
	}
}

func (r *wizardRig) wantShown(t *testing.T, texts ...string) {
	t.Helper()
	wantShown(t, r.win.Canvas(), texts...)
}

// wantShown checks that visible widgets on c show each text (wrapped text is split into lines in the markup, so
// the widgets' own texts are searched).
func wantShown(t *testing.T, c fyne.Canvas, texts ...string) {
	t.Helper()
	shown := shownText(c)
	for _, s := range texts {
		if !strings.Contains(shown, s) {
			t.Errorf("window does not show %q", s)
		}
	}
}

// shownText joins the texts of the visible labels, rich texts, entries, selects, buttons, checks and canvas texts on c.
func shownText(c fyne.Canvas) string {
	var b strings.Builder
	roots := append([]fyne.CanvasObject{c.Content()}, c.Overlays().List()...)
	for _, root := range roots {
		walk(root, func(o fyne.CanvasObject) {
			switch w := o.(type) {
			case *widget.Label:
				b.WriteString(w.Text)
			case *widget.RichText:
				b.WriteString(w.String())
			case *widget.Entry:
				b.WriteString(w.Text)
			case *widget.Select:
				b.WriteString(w.Selected)
			case *widget.Button:
				b.WriteString(w.Text)
			case *widget.Check:
				b.WriteString(w.Text)
			case *canvas.Text: // inside widgets that extend others (keyCheck, keyButton)
				b.WriteString(w.Text)
			}
			b.WriteString("\n")
		})
	}
	return b.String()
}

func oneCard(t *testing.T) func(context.Context) ([]session.CardCert, error) {
	certs := []session.CardCert{fixedCert(t, "Old card", true), fixedCert(t, "Dr Alice Martin", false)}
	return func(context.Context) ([]session.CardCert, error) { return certs, nil }
}

// The whole flow with the keyboard and the mouse: address → preset → servers → certificate auto-picked → live test
// → save; one markup golden per page in each language.
func TestWizardWholeFlow(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			r := newRig(t, lang, oneCard(t), nil)
			z, c := r.z, r.win.Canvas()
			golden := func(page int) {
				t.Helper()
				test.AssertRendersToMarkup(t, fmt.Sprintf("wizard_%d_%s_%s.xml", page+1, pageKeys[page], lang), c)
			}

			// 1. Address: focus starts there; Next waits for a valid address; a bad one is explained.
			r.wantPage(t, pageAddress)
			if c.Focused() != z.address.entry {
				t.Fatalf("focus %T, want the address entry", c.Focused())
			}
			if !z.next.Disabled() || !z.back.Disabled() {
				t.Error("Next or Back enabled on an empty first page")
			}
			test.Type(z.address.entry, "alice@")
			if !z.next.Disabled() || z.address.err.Text != words.T(lang, "wizard.reason.bad_address", nil) || !z.address.err.Visible() {
				t.Errorf("bad address: next enabled=%v message %q", !z.next.Disabled(), z.address.err.Text)
			}
			test.Type(z.address.entry, "sante.example")
			if z.next.Disabled() || z.address.err.Visible() {
				t.Fatal("Next disabled with a valid address")
			}
			golden(pageAddress)
			press(c, fyne.KeyReturn) // Enter = Next

			// 2. Provider: the health messaging preset.
			r.wantPage(t, pageProvider)
			if c.Focused() != z.provider.list {
				t.Errorf("focus %T, want the provider list", c.Focused())
			}
			if !z.next.Disabled() {
				t.Error("Next enabled before a provider is chosen")
			}
			z.provider.list.SetSelectedIndex(0)
			if z.d.choice != string(profile.PresetHealth) || z.next.Disabled() {
				t.Fatalf("choice %q, next enabled=%v", z.d.choice, !z.next.Disabled())
			}
			// Issue 13 item 4: the MSSanté base (STARTTLS), implicit TLS offered as the alternative, and the host
			// names said to be guesses.
			r.wantShown(t, words.T(lang, "wizard.provider.guessed", map[string]any{"IMAP": "imap.sante.example", "SMTP": "smtp.sante.example"}),
				words.T(lang, "wizard.provider.alternative", map[string]any{"Security": words.T(lang, "wizard.security.implicit", nil),
					"IMAP": 993, "SMTP": 465}))
			golden(pageProvider)
			test.Tap(z.next)

			// 3. Servers: filled from the preset (STARTTLS 143/587, guessed names shown as guesses); the standard port
			// follows the security mode; bad ports are explained.
			r.wantPage(t, pageServers)
			imap, smtp := &z.servers.srv[0], &z.servers.srv[1]
			if imap.host.Text != "imap.sante.example" || imap.port.Text != "143" || smtp.host.Text != "smtp.sante.example" ||
				smtp.port.Text != "587" || imap.security.SelectedIndex() != 1 || smtp.security.SelectedIndex() != 1 ||
				z.servers.policy.Selected != words.T(lang, "wizard.policy.mssante", nil) {
				t.Fatalf("servers not filled from the preset: %q:%q %q:%q policy %q", imap.host.Text, imap.port.Text,
					smtp.host.Text, smtp.port.Text, z.servers.policy.Selected)
			}
			if !imap.guess.Visible() || !smtp.guess.Visible() || imap.guess.Text != words.T(lang, "wizard.servers.guessed", nil) {
				t.Errorf("guessed host names not shown as guesses: %v %v", imap.guess.Visible(), smtp.guess.Visible())
			}
			if c.Focused() != imap.host {
				t.Errorf("focus %T, want the IMAP host", c.Focused())
			}
			c.FocusNext() // Tab follows the layout: host, security, port
			if c.Focused() != imap.security {
				t.Errorf("Tab from the IMAP host went to %T, want the security list", c.Focused())
			}
			c.FocusNext()
			if c.Focused() != imap.port {
				t.Errorf("second Tab went to %T, want the IMAP port", c.Focused())
			}
			smtp.security.SetSelectedIndex(0)
			if smtp.port.Text != "465" {
				t.Errorf("implicit TLS port %q, want 465", smtp.port.Text)
			}
			smtp.security.SetSelectedIndex(1)
			if smtp.port.Text != "587" {
				t.Errorf("STARTTLS port %q, want 587", smtp.port.Text)
			}
			smtp.host.SetText("smtp.operator.example")
			if smtp.guess.Visible() || !imap.guess.Visible() {
				t.Errorf("a typed host name still said to be a guess (%v), or the other not (%v)", smtp.guess.Visible(), imap.guess.Visible())
			}
			smtp.host.SetText("smtp.sante.example")
			imap.port.SetText("99999")
			if !z.next.Disabled() || !imap.portErr.Visible() || imap.portErr.Text != words.T(lang, "wizard.reason.bad_port", nil) {
				t.Errorf("bad port: next enabled=%v message %q", !z.next.Disabled(), imap.portErr.Text)
			}
			imap.host.SetText("imap_bad host")
			if imap.hostErr.Text != words.T(lang, "wizard.reason.bad_host", nil) {
				t.Errorf("bad host message %q", imap.hostErr.Text)
			}
			imap.host.SetText("imap.sante.example")
			imap.port.SetText("143")
			if z.next.Disabled() {
				t.Fatal("Next disabled with valid servers")
			}
			golden(pageServers)
			test.Tap(z.next)

			// 4. Certificate: read in the background, the only usable one picked.
			r.wantPage(t, pageCert)
			r.settle()
			if z.d.CertSHA256 == "" || z.next.Disabled() {
				t.Fatalf("certificate not auto-picked (chosen %q)", z.d.CertSHA256)
			}
			r.wantShown(t, words.T(lang, "wizard.cert.chosen", map[string]any{"Subject": "Dr Alice Martin", "Issuer": "Dr Alice Martin"}))
			golden(pageCert)
			test.Tap(z.next)

			// 5. Live test: IMAP then SMTP, every step shown.
			r.wantPage(t, pageTest)
			r.settle()
			if got := r.mail.protocols(); !slices.Equal(got, []string{diagnosis.ProtocolIMAP, diagnosis.ProtocolSMTP}) {
				t.Fatalf("checked %v", got)
			}
			if !z.check.ok || z.check.ladder.StepCount() != 14 || z.check.detail.Visible() {
				t.Fatalf("test ok=%v steps=%d details shown=%v", z.check.ok, z.check.ladder.StepCount(), z.check.detail.Visible())
			}
			r.wantShown(t, words.Message(lang, diagnosis.OK), words.T(lang, "diag.step.client_cert", nil),
				words.T(lang, "diag.ms", map[string]any{"Ms": "40"}))
			golden(pageTest)
			test.Tap(z.next)

			// 6. Save: the name is suggested; no "save anyway" after a good test; Enter saves.
			r.wantPage(t, pageSave)
			if z.save.name.Text != "alice@sante.example" || z.save.anyway.Visible() || z.next.Disabled() {
				t.Fatalf("name %q, anyway shown=%v, save enabled=%v", z.save.name.Text, z.save.anyway.Visible(), !z.next.Disabled())
			}
			if z.next.Text != words.T(lang, "wizard.save", nil) {
				t.Errorf("last button %q", z.next.Text)
			}
			golden(pageSave)
			press(c, fyne.KeyReturn)
			r.settle()
			if len(r.saved) != 1 || len(r.store.saved) != 1 {
				t.Fatalf("onSaved %d times, store got %d", len(r.saved), len(r.store.saved))
			}
			p := r.store.saved[0]
			if err := p.Validate(); err != nil {
				t.Fatalf("store got an invalid profile: %v", err)
			}
			wantP := &profile.Profile{Version: profile.Version, Name: "alice@sante.example", Address: "alice@sante.example",
				IMAP:  profile.Server{Host: "imap.sante.example", Port: 143, Security: profile.StartTLS},
				SMTP:  profile.Server{Host: "smtp.sante.example", Port: 587, Security: profile.StartTLS},
				Login: profile.LoginAuto, TLSPolicy: profile.PolicyMSSante, CertSHA256: z.d.CertSHA256}
			if fmt.Sprintf("%+v", *p) != fmt.Sprintf("%+v", *wantP) {
				t.Errorf("saved\n%+v\nwant\n%+v", *p, *wantP)
			}
			if len(c.Overlays().List()) != 0 {
				t.Error("wizard still shown after saving")
			}
		})
	}
}

func TestWizardAutoconfig(t *testing.T) {
	toProvider := func(t *testing.T, r *wizardRig) {
		t.Helper()
		test.Type(r.z.address.entry, "bob@clinic.example")
		test.Tap(r.z.next)
		r.wantPage(t, pageProvider)
	}
	auto := func(z *wizard) { z.provider.list.SetSelectedIndex(slices.Index(z.provider.choices, choiceAuto)) }

	t.Run("found", func(t *testing.T) {
		r := newRig(t, words.English, oneCard(t), nil)
		r.mail.discover = func(_ context.Context, addr string) (*autoconfig.Result, error) {
			if addr != "bob@clinic.example" {
				return nil, fmt.Errorf("address %q", addr)
			}
			return &autoconfig.Result{Source: autoconfig.SourceAutoconfigXML,
				Target: "https://autoconfig.clinic.example/mail/config-v1.1.xml",
				IMAP:   []autoconfig.Server{{Server: profile.Server{Host: "mx.clinic.example", Port: 993, Security: profile.Implicit}}},
				SMTP:   []autoconfig.Server{{Server: profile.Server{Host: "out.clinic.example", Port: 587, Security: profile.StartTLS}}},
			}, nil
		}
		toProvider(t, r)
		auto(r.z)
		r.settle()
		z := r.z
		if z.d.choice != choiceAuto || z.next.Disabled() || z.provider.bar.Visible() {
			t.Fatalf("choice %q next enabled=%v progress shown=%v", z.d.choice, !z.next.Disabled(), z.provider.bar.Visible())
		}
		r.wantShown(t, "mx.clinic.example:993", "out.clinic.example:587",
			"https://autoconfig.clinic.example/mail/config-v1.1.xml", words.T(words.English, "wizard.source.autoconfig-xml", nil))
		test.Tap(z.next)
		if z.servers.srv[0].host.Text != "mx.clinic.example" || z.servers.srv[1].host.Text != "out.clinic.example" ||
			z.servers.srv[1].port.Text != "587" || z.servers.srv[1].security.SelectedIndex() != 1 || z.next.Disabled() {
			t.Errorf("servers not filled from autoconfig: %q %q:%q", z.servers.srv[0].host.Text, z.servers.srv[1].host.Text, z.servers.srv[1].port.Text)
		}
	})

	// Issue 13 item 4: DNS SRV answers are not authenticated; a server outside the mail domain is used only once
	// the person confirmed it, with both names shown.
	t.Run("SRV outside the domain needs confirmation", func(t *testing.T) {
		for _, lang := range words.Langs {
			r := newRig(t, lang, oneCard(t), nil)
			r.mail.discover = func(context.Context, string) (*autoconfig.Result, error) {
				return &autoconfig.Result{Domain: "clinic.example", Source: autoconfig.SourceSRV, Target: "clinic.example",
					IMAP: []autoconfig.Server{{Server: profile.Server{Host: "mail.elsewhere.example", Port: 993, Security: profile.Implicit}, OutsideDomain: true}},
					SMTP: []autoconfig.Server{{Server: profile.Server{Host: "smtp.clinic.example", Port: 587, Security: profile.StartTLS}}},
				}, nil
			}
			toProvider(t, r)
			auto(r.z)
			r.settle()
			z := r.z
			data := map[string]any{"Domain": "clinic.example", "Hosts": "mail.elsewhere.example"}
			r.wantShown(t, words.T(lang, "wizard.discover.outside", data), words.T(lang, "wizard.discover.confirm", data))
			if !z.next.Disabled() {
				t.Fatal("Next enabled before the outside server was confirmed")
			}
			press(r.win.Canvas(), fyne.KeyReturn)
			r.wantPage(t, pageProvider)
			test.Tap(z.provider.confirm)
			if z.next.Disabled() {
				t.Fatal("Next disabled after the confirmation")
			}
			test.Tap(z.next)
			if z.servers.srv[0].host.Text != "mail.elsewhere.example" {
				t.Errorf("IMAP host %q", z.servers.srv[0].host.Text)
			}
			// Another choice takes the question away; searching again asks again.
			test.Tap(z.back)
			z.provider.list.SetSelectedIndex(slices.Index(z.provider.choices, choiceManual))
			if z.provider.confirm.Visible() || z.provider.outside.Visible() || z.next.Disabled() {
				t.Error("the confirmation outlived the choice it was for")
			}
			auto(z)
			r.settle()
			if !z.provider.confirm.Visible() || z.provider.confirm.Checked || !z.next.Disabled() {
				t.Error("a new search did not ask again")
			}
		}
	})

	t.Run("SRV inside the domain is used as found", func(t *testing.T) {
		r := newRig(t, words.French, oneCard(t), nil)
		r.mail.discover = func(context.Context, string) (*autoconfig.Result, error) {
			return &autoconfig.Result{Domain: "clinic.example", Source: autoconfig.SourceSRV, Target: "clinic.example",
				IMAP: []autoconfig.Server{{Server: profile.Server{Host: "imap.clinic.example", Port: 993, Security: profile.Implicit}}}}, nil
		}
		toProvider(t, r)
		auto(r.z)
		r.settle()
		if r.z.provider.confirm.Visible() || r.z.next.Disabled() {
			t.Error("a server inside the domain needs no confirmation")
		}
	})

	t.Run("not found falls back to manual", func(t *testing.T) {
		r := newRig(t, words.French, oneCard(t), nil)
		r.mail.discover = func(context.Context, string) (*autoconfig.Result, error) {
			return nil, &autoconfig.NotFoundError{Domain: "clinic.example"}
		}
		toProvider(t, r)
		auto(r.z)
		r.settle()
		z := r.z
		if z.d.choice != choiceManual || z.provider.list.Selected != words.T(words.French, "wizard.provider.manual", nil) || z.next.Disabled() {
			t.Fatalf("choice %q selected %q next enabled=%v", z.d.choice, z.provider.list.Selected, !z.next.Disabled())
		}
		r.wantShown(t, words.T(words.French, "wizard.discover.not_found", map[string]any{"Domain": "clinic.example"}),
			words.T(words.French, "wizard.discover.fallback", nil))
		test.Tap(z.next)
		if z.servers.srv[0].host.Text != "" || !z.next.Disabled() {
			t.Fatalf("manual: host %q, next enabled=%v", z.servers.srv[0].host.Text, !z.next.Disabled())
		}
		test.Type(z.servers.srv[0].host, "imap.clinic.example")
		test.Type(z.servers.srv[1].host, "smtp.clinic.example")
		if z.next.Disabled() {
			t.Error("Next disabled after typing both hosts")
		}
	})

	t.Run("timeout", func(t *testing.T) {
		r := newRig(t, words.English, oneCard(t), nil)
		r.mail.discover = func(context.Context, string) (*autoconfig.Result, error) {
			return nil, &autoconfig.NotFoundError{Domain: "clinic.example", Ctx: context.DeadlineExceeded}
		}
		toProvider(t, r)
		auto(r.z)
		r.settle()
		r.wantShown(t, words.T(words.English, "wizard.discover.timeout", map[string]any{"Domain": "clinic.example"}))
	})

	t.Run("cancel", func(t *testing.T) {
		r := newRig(t, words.English, oneCard(t), nil)
		started := make(chan struct{})
		r.mail.discover = func(ctx context.Context, _ string) (*autoconfig.Result, error) {
			close(started)
			<-ctx.Done()
			return nil, &autoconfig.NotFoundError{Domain: "clinic.example", Ctx: ctx.Err()}
		}
		toProvider(t, r)
		auto(r.z)
		r.open()
		<-started
		if !r.z.provider.bar.Visible() || !r.z.provider.stop.Visible() || !r.z.next.Disabled() {
			t.Fatal("no progress or Stop while searching, or Next enabled")
		}
		test.Tap(r.z.provider.stop)
		r.settle()
		if r.z.d.choice != choiceManual || r.z.provider.bar.Visible() {
			t.Fatalf("after stop: choice %q", r.z.d.choice)
		}
		r.wantShown(t, words.T(words.English, "wizard.discover.cancelled", nil))
	})
}

// rigAtTest drives a new wizard with the health preset up to the live test page, with check as the fake Check.
func rigAtTest(t *testing.T, lang words.Lang, check func(context.Context, *profile.Profile, string, func(diagnosis.Step)) *diagnosis.Report) *wizardRig {
	t.Helper()
	r := newRig(t, lang, oneCard(t), nil)
	r.mail.check = check
	z := r.z
	test.Type(z.address.entry, "alice@sante.example")
	test.Tap(z.next)
	z.provider.list.SetSelectedIndex(0)
	test.Tap(z.next)
	test.Tap(z.next)
	r.settle()
	test.Tap(z.next)
	r.wantPage(t, pageTest)
	return r
}

func TestWizardCancelDuringTest(t *testing.T) {
	started := make(chan struct{})
	var sawCancel bool
	r := rigAtTest(t, words.English, func(ctx context.Context, _ *profile.Profile, _ string, progress func(diagnosis.Step)) *diagnosis.Report {
		progress(diagnosis.Step{Name: diagnosis.StepDNS, OK: true, Ms: 1})
		close(started)
		<-ctx.Done()
		sawCancel = errors.Is(ctx.Err(), context.Canceled)
		return &diagnosis.Report{Code: diagnosis.ConnectTimeout, Steps: []diagnosis.Step{
			{Name: diagnosis.StepDNS, OK: true, Ms: 1}, {Name: diagnosis.StepConnect, Ms: 5, Detail: ctx.Err().Error()}}}
	})
	r.open()
	<-started
	z := r.z
	if !z.check.run.busy() || !z.next.Disabled() || z.check.stop.Disabled() || z.check.ladder.StepCount() != 1 {
		t.Fatalf("while testing: busy=%v next enabled=%v stop enabled=%v steps=%d", z.check.run.busy(), !z.next.Disabled(),
			!z.check.stop.Disabled(), z.check.ladder.StepCount())
	}
	r.wantShown(t, words.T(words.English, "diag.running", nil))
	test.Tap(z.check.stop)
	r.settle()
	if !sawCancel {
		t.Error("Check's context was not cancelled")
	}
	if z.check.run.busy() || z.check.ok || z.next.Disabled() || z.check.again.Disabled() {
		t.Fatalf("after stop: busy=%v ok=%v next enabled=%v", z.check.run.busy(), z.check.ok, !z.next.Disabled())
	}
	r.wantShown(t, words.T(words.English, "wizard.test.stopped", nil))
	if got := r.mail.protocols(); !slices.Equal(got, []string{diagnosis.ProtocolIMAP}) {
		t.Errorf("checked %v after a stop during IMAP", got)
	}
	// A stopped test needs "save anyway".
	test.Tap(z.next)
	if !z.save.anyway.Visible() || !z.next.Disabled() {
		t.Errorf("save page after a stopped test: anyway shown=%v save enabled=%v", z.save.anyway.Visible(), !z.next.Disabled())
	}
}

// Escape closes the wizard at any time, cancelling the test; nothing is saved.
func TestWizardEscapeDuringTest(t *testing.T) {
	started := make(chan struct{})
	r := rigAtTest(t, words.French, func(ctx context.Context, _ *profile.Profile, _ string, _ func(diagnosis.Step)) *diagnosis.Report {
		close(started)
		<-ctx.Done()
		return &diagnosis.Report{Code: diagnosis.ConnectTimeout}
	})
	r.open()
	<-started
	c := r.win.Canvas()
	press(c, fyne.KeyEscape)
	r.settle() // returns only because the close cancelled the Check
	if len(c.Overlays().List()) != 0 || len(r.saved) != 0 || len(r.store.saved) != 0 {
		t.Fatalf("after Escape: %d overlays, %d saved", len(c.Overlays().List()), len(r.saved))
	}
	if c.OnTypedKey() != nil {
		t.Error("the wizard's key handler outlived it")
	}
}

func TestWizardFailedTestDetailsAndSaveAnyway(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			r := rigAtTest(t, lang, func(_ context.Context, _ *profile.Profile, _ string, progress func(diagnosis.Step)) *diagnosis.Report {
				rep := untrustedReport()
				for _, s := range rep.Steps {
					progress(s)
				}
				return rep
			})
			r.settle()
			z, c := r.z, r.win.Canvas()
			if z.check.ok || !z.check.detail.Visible() {
				t.Fatalf("failed test: ok=%v details shown=%v", z.check.ok, z.check.detail.Visible())
			}
			if got := r.mail.protocols(); !slices.Equal(got, []string{diagnosis.ProtocolIMAP}) {
				t.Errorf("checked %v: SMTP must not run after IMAP failed", got)
			}
			r.wantShown(t, words.Message(lang, diagnosis.ServerCertUntrusted), words.Remedy(lang, diagnosis.ServerCertUntrusted),
				words.T(lang, "wizard.test.guessed", map[string]any{"Hosts": "imap.sante.example, smtp.sante.example"}))
			test.AssertRendersToMarkup(t, fmt.Sprintf("wizard_5_test_failed_%s.xml", lang), c)
			if c.Focused() != z.check.detail {
				t.Errorf("focus %T, want Details", c.Focused())
			}
			press(c, fyne.KeyReturn) // Enter on the focused Details button opens the diagnostics
			if n := len(c.Overlays().List()); n != 2 {
				t.Fatalf("%d overlays, want the wizard and the diagnostics", n)
			}
			r.wantShown(t, words.T(lang, "diag.title", nil), "CN=Rogue CA")
			press(c, fyne.KeyEscape) // closes the diagnostics only
			if n := len(c.Overlays().List()); n != 1 {
				t.Fatalf("%d overlays after closing the diagnostics", n)
			}

			test.Tap(z.next)
			r.wantPage(t, pageSave)
			if !z.save.warn.Visible() || !z.save.anyway.Visible() || !z.next.Disabled() {
				t.Fatalf("warn shown=%v anyway shown=%v save enabled=%v", z.save.warn.Visible(), z.save.anyway.Visible(), !z.next.Disabled())
			}
			test.AssertRendersToMarkup(t, fmt.Sprintf("wizard_6_save_anyway_%s.xml", lang), c)
			press(c, fyne.KeyReturn) // Save is disabled: nothing happens
			r.settle()
			if len(r.store.saved) != 0 {
				t.Fatal("saved without \"save anyway\"")
			}
			test.Tap(z.save.anyway)
			if z.next.Disabled() {
				t.Fatal("Save disabled with \"save anyway\" ticked")
			}
			test.Tap(z.next)
			r.settle()
			if len(r.store.saved) != 1 || len(r.saved) != 1 {
				t.Fatalf("store got %d, onSaved %d", len(r.store.saved), len(r.saved))
			}
		})
	}
}

// A store failure is shown in plain words and the wizard stays open to try again.
func TestWizardSaveFailure(t *testing.T) {
	r := rigAtTest(t, words.English, checkOK)
	r.settle()
	r.store.saveErr = &profile.FileError{Path: "/x/alice.json", Err: errors.New("disk full")}
	test.Tap(r.z.next)
	test.Tap(r.z.next)
	r.settle()
	if len(r.saved) != 0 || !r.z.save.err.Visible() || !strings.HasPrefix(r.z.save.err.Text, words.T(words.English, "wizard.save.failed", nil)) {
		t.Fatalf("saved %d, error %q", len(r.saved), r.z.save.err.Text)
	}
	if r.z.next.Disabled() || len(r.win.Canvas().Overlays().List()) != 1 {
		t.Error("wizard closed or Save disabled after a failed save")
	}
	r.z.save.name.SetText("-bad")
	if r.z.save.nameErr.Text != words.T(words.English, "wizard.reason.bad_name", nil) || !r.z.next.Disabled() {
		t.Errorf("bad name: %q", r.z.save.nameErr.Text)
	}
}

func TestWizardEditExisting(t *testing.T) {
	sha := strings.Repeat("0f", 32)
	existing := &profile.Profile{Version: profile.Version, Name: "work", Address: "carol@hospital.example",
		IMAP:  profile.Server{Host: "imap.hospital.example", Port: 143, Security: profile.StartTLS},
		SMTP:  profile.Server{Host: "smtp.hospital.example", Port: 587, Security: profile.StartTLS},
		Login: profile.LoginExternal, TLSPolicy: profile.PolicyMSSante, CAFiles: []string{"/etc/ssl/hospital-ca.pem", "/etc/ssl/other.pem"},
		CertSHA256: sha, PKCS11Module: "/usr/lib/cps.so"}
	noCard := func(context.Context) ([]session.CardCert, error) {
		return nil, &session.CardError{Reader: "Reader 0", Err: session.ErrCardAbsent}
	}
	r := newRig(t, words.English, noCard, existing)
	z := r.z
	if z.address.entry.Text != existing.Address || z.next.Disabled() {
		t.Fatalf("address %q next enabled=%v", z.address.entry.Text, !z.next.Disabled())
	}
	test.Tap(z.next)
	if z.d.choice != choiceManual || z.next.Disabled() {
		t.Fatalf("provider %q", z.d.choice)
	}
	test.Tap(z.next)
	if z.servers.srv[0].host.Text != "imap.hospital.example" || z.servers.srv[0].port.Text != "143" || z.servers.srv[0].security.SelectedIndex() != 1 ||
		z.d.Login != profile.LoginExternal || z.servers.policy.SelectedIndex() != 1 || len(z.d.CAFiles) != 2 {
		t.Fatalf("servers not pre-filled: %q:%q login %q", z.servers.srv[0].host.Text, z.servers.srv[0].port.Text, z.d.Login)
	}
	r.wantShown(t, "/etc/ssl/hospital-ca.pem", "/etc/ssl/other.pem")
	// Remove a CA file with its button, add one back.
	var removed bool
	for _, o := range z.servers.caBox.Objects {
		row := o.(*fyne.Container)
		if row.Objects[0].(*widget.Label).Text == "/etc/ssl/other.pem" {
			test.Tap(row.Objects[1].(*keyButton))
			removed = true
			break
		}
	}
	if !removed || !slices.Equal(z.d.CAFiles, []string{"/etc/ssl/hospital-ca.pem"}) {
		t.Fatalf("CA files after remove: %v", z.d.CAFiles)
	}
	z.servers.addCAFile("relative.pem")
	if !z.next.Disabled() || !z.servers.err.Visible() || !strings.Contains(z.servers.err.Text, words.T(words.English, "wizard.reason.bad_path", nil)) {
		t.Errorf("relative CA path accepted: %q", z.servers.err.Text)
	}
	z.servers.removeCAFile("relative.pem")
	test.Tap(z.next)
	r.settle()
	r.wantPage(t, pageCert)
	r.wantShown(t, words.T(words.English, "wizard.cert.no_card", nil))
	if z.d.CertSHA256 != sha || z.next.Disabled() || z.cert.retry.Disabled() {
		t.Fatalf("cert %q next enabled=%v retry enabled=%v", z.d.CertSHA256, !z.next.Disabled(), !z.cert.retry.Disabled())
	}
	test.Tap(z.next)
	r.settle()
	test.Tap(z.next)
	if z.save.name.Text != "work" {
		t.Fatalf("name %q", z.save.name.Text)
	}
	z.save.name.SetText("hospital")
	test.Tap(z.next)
	r.settle()
	if len(r.store.saved) != 1 {
		t.Fatalf("store got %d", len(r.store.saved))
	}
	p := r.store.saved[0]
	if p.Name != "hospital" || p.CertSHA256 != sha || p.PKCS11Module != "/usr/lib/cps.so" || p.IMAP.Port != 143 ||
		!slices.Equal(p.CAFiles, []string{"/etc/ssl/hospital-ca.pem"}) {
		t.Errorf("saved %+v", *p)
	}
	if !slices.Equal(r.store.deleted, []string{"work"}) {
		t.Errorf("deleted %v, want the old name", r.store.deleted)
	}
	if ps := r.mail.profiles; len(ps) != 2 || ps[0].CertSHA256 != sha || ps[0].Login != profile.LoginExternal {
		t.Errorf("the test did not use the edited profile: %+v", ps)
	}
}

// No card: the page says so and offers a retry; the card inserted, Retry finds it and picks its certificate.
func TestWizardCertificateRetry(t *testing.T) {
	var mu sync.Mutex
	var certs []session.CardCert
	r := newRig(t, words.English, func(context.Context) ([]session.CardCert, error) {
		mu.Lock()
		defer mu.Unlock()
		if certs == nil {
			return nil, &session.CardError{Err: session.ErrCardAbsent}
		}
		return certs, nil
	}, nil)
	z := r.z
	test.Type(z.address.entry, "alice@sante.example")
	test.Tap(z.next)
	z.provider.list.SetSelectedIndex(0)
	test.Tap(z.next)
	test.Tap(z.next)
	r.settle()
	if z.d.CertSHA256 != "" || !z.next.Disabled() || !z.cert.pick.Disabled() {
		t.Fatalf("no card: chosen %q next enabled=%v", z.d.CertSHA256, !z.next.Disabled())
	}
	r.wantShown(t, words.T(words.English, "wizard.cert.no_card", nil))
	mu.Lock()
	certs = []session.CardCert{fixedCert(t, "Dr Alice Martin", false), fixedCert(t, "Dr Bruno Petit", false)}
	mu.Unlock()
	test.Tap(z.cert.retry)
	r.settle()
	// Two usable certificates: nothing is picked for the person; the picker chooses.
	if z.d.CertSHA256 != "" || z.cert.pick.Disabled() {
		t.Fatalf("two certificates: chosen %q pick enabled=%v", z.d.CertSHA256, !z.cert.pick.Disabled())
	}
	test.Tap(z.cert.pick)
	r.wantShown(t, words.T(words.English, "picker.title", nil))
	mu.Lock()
	bruno := certs[1]
	mu.Unlock()
	// Choose Bruno's certificate in the picker (its rows are sorted usable first, in order).
	p := findPicker(t, r.win.Canvas())
	p.list.Select(1)
	test.Tap(p.choose)
	if z.d.CertSHA256 != bruno.Fingerprint() || z.next.Disabled() {
		t.Fatalf("chosen %q, want Bruno's", z.d.CertSHA256)
	}
}

// findPicker returns the certificate picker dialog on top of c, found by its Choose button.
func findPicker(t *testing.T, c fyne.Canvas) *certPicker {
	t.Helper()
	top := c.Overlays().Top()
	var list *widget.List
	var choose *widget.Button
	walk(top, func(o fyne.CanvasObject) {
		switch w := o.(type) {
		case *widget.List:
			list = w
		case *widget.Button:
			if w.Text == words.T(words.English, "picker.choose", nil) {
				choose = w
			}
		}
	})
	if list == nil || choose == nil {
		t.Fatal("certificate picker not shown")
	}
	return &certPicker{list: list, choose: choose}
}

// walk calls fn for o and every visible object inside it.
// walk calls fn on o and everything drawn under it (containers and widget renderers).
func walk(o fyne.CanvasObject, fn func(fyne.CanvasObject)) {
	if o == nil || !o.Visible() {
		return
	}
	fn(o)
	switch x := o.(type) {
	case *fyne.Container:
		for _, c := range x.Objects {
			walk(c, fn)
		}
	case fyne.Widget:
		for _, c := range test.WidgetRenderer(x).Objects() {
			walk(c, fn)
		}
	}
}

// Enter with nothing focused still means Next; Escape on the first page closes without saving.
func TestWizardKeyboardWithoutFocus(t *testing.T) {
	r := newRig(t, words.English, oneCard(t), nil)
	c := r.win.Canvas()
	test.Type(r.z.address.entry, "alice@sante.example")
	c.Unfocus()
	press(c, fyne.KeyEnter)
	r.wantPage(t, pageProvider)
	if c.Focused() != r.z.provider.list {
		t.Errorf("focus %T on the provider page", c.Focused())
	}
	press(c, fyne.KeyReturn) // no provider yet: Next is disabled
	r.wantPage(t, pageProvider)
	press(c, fyne.KeyEscape)
	if len(c.Overlays().List()) != 0 || len(r.saved) != 0 {
		t.Fatal("Escape did not close the wizard")
	}
}
