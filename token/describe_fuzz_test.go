package token

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
	"time"
)

// FuzzDescribe feeds arbitrary CKA_VALUE bytes through certificate parsing, evaluation and Describe, the display
// of subject and issuer the picker and the CLI show: it must never panic, the fingerprint must always be shown,
// and a certificate that parses must show a subject and an issuer (its common name or, without one, its DN).
func FuzzDescribe(f *testing.F) {
	f.Add(mkCert(f, nil, nil))
	f.Add(mkCert(f, func(c *x509.Certificate) {
		c.Subject = pkix.Name{Organization: []string{"Clinique \u00e9t\u00e9"}, Country: []string{"FR"}}
		c.EmailAddresses = []string{"a@b.test"}
		c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, 250, 1, 71, 4, 2, 2}}
	}, nil))
	f.Add(mkCert(f, func(c *x509.Certificate) { c.Subject = pkix.Name{}; c.KeyUsage = 0xffff }, nil))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		c := newCertificate(1, "tok", "serial", []byte{1}, "label", der, true, time.Unix(1_800_000_000, 0))
		d := Describe(&c)
		if len(d.SHA256) != 64 || strings.Count(d.SHA256Colons, ":") != 31 {
			t.Fatalf("fingerprint %q / %q", d.SHA256, d.SHA256Colons)
		}
		if c.Cert == nil && d.ParseError == "" {
			t.Fatalf("unparsable certificate without a parse error: %+v", d)
		}
		if c.Cert != nil {
			if d.SubjectDN != c.Cert.Subject.String() || d.IssuerDN != c.Cert.Issuer.String() {
				t.Fatalf("DNs %q %q", d.SubjectDN, d.IssuerDN)
			}
			if d.Subject == "" && d.SubjectDN != "" || d.Issuer == "" && d.IssuerDN != "" {
				t.Fatalf("empty display name for %q / %q", d.SubjectDN, d.IssuerDN)
			}
			if d.NotAfter == "" || d.NotBefore == "" {
				t.Fatalf("validity not shown: %+v", d)
			}
		}
		if d.Usable != c.Verdict.Usable || len(d.Reasons) != len(c.Verdict.Reasons) {
			t.Fatalf("description verdict %v %v, certificate %+v", d.Usable, d.Reasons, c.Verdict)
		}
	})
}
