package gui

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

func pickerCerts(t *testing.T) []session.CardCert {
	return []session.CardCert{
		testCert(t, "Old card", time.Now().Add(-time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
		testCert(t, "Dr Alice Martin", time.Now().Add(24*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
		testCert(t, "Signature only", time.Now().Add(24*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}),
	}
}

func TestPickerUsableFirstAndAutoSelect(t *testing.T) {
	for _, lang := range words.Langs {
		a := test.NewTempApp(t)
		w := a.NewWindow("t")
		w.Resize(fyne.NewSize(800, 600))
		var chosen []session.CardCert
		p := newCertPicker(w, lang, pickerCerts(t), "", func(c session.CardCert) { chosen = append(chosen, c) })
		p.dlg.Show()
		if p.certs[0].Cert.Subject.CommonName != "Dr Alice Martin" {
			t.Fatalf("%s: usable certificate not first: %s", lang, p.certs[0].Cert.Subject.CommonName)
		}
		if p.selected != 0 || p.choose.Disabled() {
			t.Fatalf("%s: the only usable certificate is not preselected (selected %d)", lang, p.selected)
		}
		markup := test.RenderToMarkup(w.Canvas())
		for _, want := range []string{"Old card", words.T(lang, "reason.expired", nil),
			words.T(lang, "reason.no-client-auth", nil), "SHA-256 "} {
			if !strings.Contains(markup, want) {
				t.Errorf("%s: picker does not show %q", lang, want)
			}
		}
		// An unusable certificate can be looked at but not chosen.
		p.list.Select(2)
		if !p.choose.Disabled() || p.details.Disabled() {
			t.Errorf("%s: unusable selection: choose enabled=%v details enabled=%v", lang, !p.choose.Disabled(), !p.details.Disabled())
		}
		p.showDetails()
		p.list.Select(0)
		test.Tap(p.choose)
		if len(chosen) != 1 || chosen[0].Cert.Subject.CommonName != "Dr Alice Martin" {
			t.Fatalf("%s: chosen %v", lang, chosen)
		}
	}
}

func TestPickerPreselectsCurrentAndHandlesNone(t *testing.T) {
	a := test.NewTempApp(t)
	w := a.NewWindow("t")
	certs := pickerCerts(t)
	certs = append(certs, testCert(t, "Dr Bruno Petit", time.Now().Add(24*time.Hour), nil))
	p := newCertPicker(w, words.English, certs, strings.ToUpper(certs[3].Fingerprint()), func(session.CardCert) {})
	if p.selected < 0 || p.certs[p.selected].Cert.Subject.CommonName != "Dr Bruno Petit" {
		t.Fatalf("current certificate not preselected: %d", p.selected)
	}
	if _, ok := AutoPick(certs); ok {
		t.Error("AutoPick chose among two usable certificates")
	}
	empty := newCertPicker(w, words.English, nil, "", func(session.CardCert) {})
	if !empty.choose.Disabled() {
		t.Error("choose enabled with no certificate")
	}
}
