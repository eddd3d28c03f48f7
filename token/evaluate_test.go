package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"testing"
	"time"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// mkCert self-signs a certificate from tmpl (defaults filled in) with key (default a fresh P-256 key).
func mkCert(t testing.TB, mod func(*x509.Certificate), key crypto.Signer) []byte {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "Dr Test"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestEvaluate(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mod    func(*x509.Certificate)
		key    crypto.Signer
		der    []byte // overrides mod/key
		noKey  bool
		want   []Reason
		usable bool
	}{
		{name: "usable", usable: true},
		{name: "no extensions at all", mod: func(c *x509.Certificate) { c.KeyUsage = 0; c.ExtKeyUsage = nil }, usable: true},
		{name: "expired", mod: func(c *x509.Certificate) { c.NotAfter = testNow.Add(-time.Minute) }, want: []Reason{ReasonExpired}},
		{name: "not yet valid", mod: func(c *x509.Certificate) { c.NotBefore = testNow.Add(time.Minute) }, want: []Reason{ReasonNotYetValid}},
		{name: "no private key", noKey: true, want: []Reason{ReasonNoPrivateKey}},
		{name: "key usage without digitalSignature", mod: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }, want: []Reason{ReasonNoDigitalSignature}},
		{name: "eku server only", mod: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }, want: []Reason{ReasonNoClientAuth}},
		{name: "eku email only", mod: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection} }, want: []Reason{ReasonNoClientAuth}},
		{name: "eku any", mod: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, usable: true},
		{name: "eku unknown only", mod: func(c *x509.Certificate) {
			c.ExtKeyUsage = nil
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, 3, 4}}
		}, want: []Reason{ReasonNoClientAuth}},
		{name: "ca", mod: func(c *x509.Certificate) {
			c.BasicConstraintsValid = true
			c.IsCA = true
			c.KeyUsage |= x509.KeyUsageCertSign
		}, want: []Reason{ReasonCACertificate}},
		{name: "ed25519 key", key: edKey, want: []Reason{ReasonUnsupportedKey}},
		{name: "several reasons, in order", noKey: true, mod: func(c *x509.Certificate) {
			c.NotAfter = testNow.Add(-time.Minute)
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, want: []Reason{ReasonExpired, ReasonNoPrivateKey, ReasonNoClientAuth}},
		{name: "malformed", der: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, want: []Reason{ReasonMalformed}},
		{name: "malformed without key", der: []byte("garbage"), noKey: true, want: []Reason{ReasonMalformed, ReasonNoPrivateKey}},
		{name: "empty value", der: []byte{}, want: []Reason{ReasonMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := tt.der
			if der == nil {
				der = mkCert(t, tt.mod, tt.key)
			}
			c := newCertificate(3, "tok", "serial", []byte{1}, "label", der, !tt.noKey, testNow)
			if c.Verdict.Usable != tt.usable || !slices.Equal(c.Verdict.Reasons, tt.want) {
				t.Fatalf("verdict = %+v, want usable %t reasons %v", c.Verdict, tt.usable, tt.want)
			}
			if (c.Cert == nil) != (c.ParseErr != nil) {
				t.Fatalf("Cert %v and ParseErr %v must be exclusive", c.Cert, c.ParseErr)
			}
			if again := Evaluate(&c, testNow); !slices.Equal(again.Reasons, c.Verdict.Reasons) {
				t.Fatalf("Evaluate not pure: %v then %v", c.Verdict, again)
			}
		})
	}
}

func TestEvaluateNil(t *testing.T) {
	v := Evaluate(nil, testNow)
	if v.Usable || !v.Has(ReasonMalformed) {
		t.Fatalf("Evaluate(nil) = %+v", v)
	}
}

func TestCertificateKeyInfoAndHelpers(t *testing.T) {
	der := mkCert(t, func(c *x509.Certificate) {
		c.EmailAddresses = []string{"test@cardmail.test"}
	}, nil)
	c := newCertificate(1, "tok", "sn", []byte{0xab, 0xcd}, "l", der, true, testNow)
	if c.KeyType != "ECDSA" || c.KeyBits != 256 {
		t.Errorf("key = %s/%d, want ECDSA/256", c.KeyType, c.KeyBits)
	}
	if c.CommonName() != "Dr Test" || c.Email() != "test@cardmail.test" || c.IssuerCommonName() != "Dr Test" {
		t.Errorf("helpers: %q %q %q", c.CommonName(), c.Email(), c.IssuerCommonName())
	}
	if c.IDHex() != "abcd" || len(c.Fingerprint()) != 64 || !c.NotAfter().Equal(testNow.Add(time.Hour)) {
		t.Errorf("helpers: %q %q %v", c.IDHex(), c.Fingerprint(), c.NotAfter())
	}
	bad := newCertificate(1, "", "", nil, "", []byte{1}, false, testNow)
	if bad.CommonName() != "" || bad.Email() != "" || !bad.NotAfter().IsZero() || bad.KeyType != "" {
		t.Errorf("helpers on malformed certificate: %+v", bad)
	}
}
