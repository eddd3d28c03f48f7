package tlspolicy

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// fuzzPKI is built once per fuzz process: a CA, a certificate it issued, good/revoked OCSP responses and CRLs.
type fuzzPKI struct {
	ca                *testCA
	cert, other       *x509.Certificate
	ocspGood, ocspRev []byte
	crlGood, crlRev   []byte
}

var (
	fuzzOnce sync.Once
	fuzzData *fuzzPKI
)

func getFuzzPKI(t testing.TB) *fuzzPKI {
	fuzzOnce.Do(func() {
		ca := newRootCA(t, "Fuzz Root")
		cert := ca.issue(t, "fuzz leaf", leafOpts{ec: true}).cert
		other := ca.issue(t, "fuzz other", leafOpts{ec: true}).cert
		fuzzData = &fuzzPKI{
			ca: ca, cert: cert, other: other,
			ocspGood: stapledResponse(t, ca, cert, ocsp.Good),
			ocspRev:  stapledResponse(t, ca, cert, ocsp.Revoked),
			crlGood:  ca.freshCRL(t, other.SerialNumber),
			crlRev:   ca.freshCRL(t, cert.SerialNumber),
		}
	})
	if fuzzData == nil {
		t.Fatal("fuzz PKI setup failed")
	}
	return fuzzData
}

func FuzzParseCAFile(f *testing.F) {
	d := getFuzzPKI(f)
	f.Add(d.ca.cert.Raw)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.ca.cert.Raw}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.cert.Raw}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCAFile(data)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		for _, c := range certs {
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Fatalf("non-CA accepted: %s", c.Subject)
			}
		}
	})
}

func FuzzOCSPStatus(f *testing.F) {
	d := getFuzzPKI(f)
	f.Add(d.ocspGood)
	f.Add(d.ocspRev)
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		s := OCSPStatus(data, d.cert, d.ca.cert, now)
		switch s.State {
		case Good, Revoked:
			if s.Err != nil {
				t.Fatalf("definite state with error %v", s.Err)
			}
			// A definite answer must be a response for this certificate signed by its issuer.
			if _, err := ocsp.ParseResponseForCert(data, d.cert, d.ca.cert); err != nil {
				t.Fatalf("definite state %q from a response that does not verify: %v", s.State, err)
			}
		case Unknown:
			if s.Err == nil {
				t.Fatal("unknown without a reason")
			}
		default:
			t.Fatalf("state %q", s.State)
		}
	})
}

// fuzzDP is the distribution point the fuzzed CRLs are judged for.
const fuzzDP = "http://crl.test/fuzz.crl"

func FuzzCRLStatus(f *testing.F) {
	d := getFuzzPKI(f)
	f.Add(d.crlGood)
	f.Add(d.crlRev)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d.crlRev}))
	f.Add(d.ca.crlWith(f, crlOpts{exts: []pkix.Extension{deltaExt(f, 1)}}))
	f.Add(d.ca.crlWith(f, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{uris: []string{fuzzDP}, onlyUser: true})}}))
	f.Add(d.ca.crlWith(f, crlOpts{revoked: []*big.Int{d.cert.SerialNumber}, entryExts: []pkix.Extension{unknownExt(true)}}))
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, rl := CRLStatus(data, d.cert, d.ca.cert, fuzzDP, now)
		switch s.State {
		case Good, Revoked:
			if s.Err != nil || rl == nil {
				t.Fatalf("definite state with error %v / list %v", s.Err, rl != nil)
			}
			if err := rl.CheckSignatureFrom(d.ca.cert); err != nil {
				t.Fatalf("definite state from a CRL that does not verify: %v", err)
			}
			if err := checkCRLExtensions(rl, d.cert, fuzzDP); err != nil {
				t.Fatalf("definite state from a CRL refused by its extensions: %v", err)
			}
		case Unknown:
			if s.Err == nil || rl != nil {
				t.Fatalf("unknown: err %v, list %v", s.Err, rl != nil)
			}
		default:
			t.Fatalf("state %q", s.State)
		}
	})
}

// FuzzParseIDP: the issuingDistributionPoint parser never panics, and what it accepts re-encodes to the same flags.
func FuzzParseIDP(f *testing.F) {
	for _, s := range []idpSpec{{uris: []string{fuzzDP}}, {onlyUser: true}, {relative: true, indirect: true}, {someReasons: true, attr: true}} {
		f.Add(idpExt(s).Value)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		idp, err := parseIDP(data)
		if err != nil {
			if !errors.Is(err, ErrCRLMalformed) {
				t.Fatalf("error %v does not wrap ErrCRLMalformed", err)
			}
			return
		}
		if idp.relativeName && len(idp.uris) > 0 || !idp.named && (idp.relativeName || len(idp.uris) > 0) {
			t.Fatalf("inconsistent %+v", idp)
		}
	})
}

// FuzzRevocationDecision runs the whole decision (Checker.Check with a stapled response, then Policy.Decide for
// both policies) on arbitrary stapled bytes.
func FuzzRevocationDecision(f *testing.F) {
	d := getFuzzPKI(f)
	f.Add(d.ocspGood)
	f.Add(d.ocspRev)
	f.Add(d.crlRev)
	f.Add([]byte("x"))
	c := NewChecker("")
	def := &Policy{Name: Default}
	ms := &Policy{Name: MSSante, RequireRevocation: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := c.Check(context.Background(), d.cert, d.ca.cert, data)
		if s.State != Unknown && s.Source != SourceOCSPStapled {
			t.Fatalf("status %+v", s)
		}
		for _, p := range []*Policy{def, ms} {
			got, err := p.Decide([]RevocationStatus{s})
			switch {
			case s.State == Revoked:
				if !errors.Is(err, ErrRevoked) {
					t.Fatalf("%s: revoked gives %v", p.Name, err)
				}
			case s.State == Good:
				if err != nil {
					t.Fatalf("%s: good gives %v", p.Name, err)
				}
			case p.RequireRevocation:
				if !errors.Is(err, ErrRevocationUnavailable) {
					t.Fatalf("%s: unknown gives %v", p.Name, err)
				}
			default:
				if err != nil {
					t.Fatalf("%s: unknown gives %v", p.Name, err)
				}
			}
			if got.State != s.State {
				t.Fatalf("decided %q from %q", got.State, s.State)
			}
		}
	})
}
