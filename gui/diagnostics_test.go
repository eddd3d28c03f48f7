package gui

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/words"
)

// fullReport is a failed SMTP check with every technical fact filled in.
func fullReport(lang words.Lang) *diagnosis.Report {
	sent := strings.Repeat("cd", 32)
	r := untrustedReport()
	r.Code = diagnosis.ClientCertCANotAccepted
	r.Message, r.Remedy = words.Message(lang, r.Code), words.Remedy(lang, r.Code)
	r.Steps = []diagnosis.Step{
		{Name: diagnosis.StepDNS, OK: true, Ms: 1, Detail: "127.0.0.1"},
		{Name: diagnosis.StepConnect, OK: true, Ms: 2},
		{Name: diagnosis.StepTLS, OK: true, Ms: 14, Detail: "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384"},
		{Name: diagnosis.StepClientCert, OK: false, Ms: 37, Detail: "issuer CN=Card CA not among the acceptable CAs"},
		{Name: diagnosis.StepGreeting, OK: true, Ms: 1},
		{Name: diagnosis.StepAuth, OK: false, Ms: 3, Detail: "535 5.7.8 authentication failed"},
	}
	r.TLS = diagnosis.TLSFacts{Version: "TLS 1.2", CipherSuite: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		ServerChain: []diagnosis.CertFacts{
			{Subject: "CN=smtp.sante.example", Issuer: "CN=Server CA", NotAfter: "2030-01-01T00:00:00Z", SHA256: strings.Repeat("ab", 32)},
			{Subject: "CN=Server CA", Issuer: "CN=Root CA", NotAfter: "2035-01-01T00:00:00Z", SHA256: strings.Repeat("ef", 32)},
		},
		ClientCertRequested: true, AcceptableCAs: []string{"CN=Other CA 1", "CN=Other CA 2"}, ClientCertSent: &sent,
		SignatureScheme: "ECDSAWithP256AndSHA256"}
	r.Server = diagnosis.ServerFacts{Greeting: "220 smtp.sante.example ESMTP", Capabilities: []string{"AUTH EXTERNAL", "8BITMIME"}}
	r.Card = diagnosis.CardFacts{Reader: "Virtual PCD 00 00", Token: "Dr Alice Martin", CertSHA256: sent}
	r.Log = []string{"C: EHLO cardmail", "S: 250 ok", "C: AUTH EXTERNAL " + diagnosis.Redacted}
	r.Time = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	return r
}

func newDiagTest(t *testing.T, lang words.Lang, r *diagnosis.Report) (*diagView, fyne.Window) {
	t.Helper()
	a := test.NewTempApp(t)
	w := a.NewWindow("t")
	w.SetContent(widget.NewLabel(""))
	w.Resize(fyne.NewSize(800, 640))
	v := newDiagView(w, lang, r)
	v.show()
	return v, w
}

func TestDiagnosticsShowsEverything(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			r := fullReport(lang)
			v, w := newDiagTest(t, lang, r)
			test.AssertRendersToMarkup(t, "diagnostics_"+string(lang)+".xml", w.Canvas())
			wantShown(t, w.Canvas(), words.Message(lang, r.Code), words.Remedy(lang, r.Code), "TLS 1.2",
				"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "CN=smtp.sante.example", "CN=Root CA", "2035-01-01T00:00:00Z",
				strings.Repeat("ef", 32), "CN=Other CA 2", "ECDSAWithP256AndSHA256", "220 smtp.sante.example ESMTP",
				"AUTH EXTERNAL 8BITMIME", "Virtual PCD 00 00", words.T(lang, "diag.step.client_cert", nil),
				words.T(lang, "diag.ms", map[string]any{"Ms": "37"}), "535 5.7.8 authentication failed")
			if v.ladder.StepCount() != len(r.Steps) {
				t.Errorf("ladder has %d steps, want %d", v.ladder.StepCount(), len(r.Steps))
			}
		})
	}
}

func TestDiagnosticsCopyAndKeyboard(t *testing.T) {
	r := fullReport(words.English)
	v, w := newDiagTest(t, words.English, r)
	c := w.Canvas()
	if c.Focused() != v.closeBtn {
		t.Fatalf("focus %T, want Close", c.Focused())
	}
	c.FocusPrevious()
	c.FocusPrevious()
	if c.Focused() != v.copyBtn {
		t.Fatalf("Shift+Tab twice from Close went to %T, want Copy", c.Focused())
	}
	press(c, fyne.KeyReturn)
	if got := fyne.CurrentApp().Clipboard().Content(); got != r.Text() {
		t.Fatalf("clipboard holds %q, want the text report", got)
	}
	if !v.status.Visible() || v.status.Text != words.T(words.English, "diag.copied", nil) {
		t.Errorf("status %q", v.status.Text)
	}
	press(c, fyne.KeyEscape)
	if len(c.Overlays().List()) != 0 {
		t.Fatalf("Escape did not close the diagnostics (focus %T)", c.Focused())
	}
}

func TestDiagnosticsSaveReport(t *testing.T) {
	test.NewTempApp(t)
	r := fullReport(words.French)
	dir := t.TempDir()
	tests := []struct {
		name string
		want []byte
	}{
		{"report.json", append(r.JSON(), '\n')},
		{"report.JSON", append(r.JSON(), '\n')},
		{"report.txt", []byte(r.Text())},
		{"report", []byte(r.Text())},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, tt.name)
		if err := os.WriteFile(path, []byte("old content that is much longer than nothing"), 0o600); err != nil {
			t.Fatal(err)
		}
		wc, err := storage.Writer(storage.NewFileURI(path))
		if err != nil {
			t.Fatal(err)
		}
		if err := writeReport(wc, r); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("%s: wrote %q, want %q", tt.name, got, tt.want)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", tt.name, fi.Mode())
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".cardmail-report-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// A directory that does not exist: a typed error naming the path, nothing written.
	wc := &failingURI{uri: storage.NewFileURI(filepath.Join(dir, "missing", "r.txt"))}
	if err := writeReport(wc, r); err == nil || !os.IsNotExist(unwrapAll(err)) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("save into a missing directory: %v", err)
	}
}

// failingURI is a URIWriteCloser for a file URI whose directory does not exist.
type failingURI struct{ uri fyne.URI }

func (f *failingURI) URI() fyne.URI               { return f.uri }
func (f *failingURI) Write(p []byte) (int, error) { return len(p), nil }
func (f *failingURI) Close() error                { return nil }

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestStepLadder(t *testing.T) {
	test.NewTempApp(t)
	l := NewStepLadder(words.French)
	l.SetRunning(true)
	l.AddSection("IMAP")
	l.Add(diagnosis.Step{Name: diagnosis.StepDNS, OK: true, Ms: 1.4})
	l.Add(diagnosis.Step{Name: "future_step", OK: false, Ms: 2})
	if l.StepCount() != 2 {
		t.Fatalf("%d steps", l.StepCount())
	}
	m := test.RenderObjectToMarkup(l)
	for _, want := range []string{"IMAP", words.T(words.French, "diag.step.dns", nil), "future_step", "1 ms",
		words.T(words.French, "diag.running", nil)} {
		if !strings.Contains(m, want) {
			t.Errorf("ladder does not show %q", want)
		}
	}
	l.SetSteps(okSteps(diagnosis.ProtocolIMAP))
	l.SetRunning(false)
	if l.StepCount() != 7 || strings.Contains(test.RenderObjectToMarkup(l), words.T(words.French, "diag.running", nil)) {
		t.Errorf("after SetSteps: %d steps", l.StepCount())
	}
	l.Reset()
	if l.StepCount() != 0 {
		t.Error("Reset left steps")
	}
}
