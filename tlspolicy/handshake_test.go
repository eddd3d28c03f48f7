package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// stapledResponse makes an OCSP response for cert signed by ca with Go's ocsp package.
func stapledResponse(t testing.TB, ca *testCA, cert *x509.Certificate, status int) []byte {
	t.Helper()
	now := time.Now()
	resp, err := ocsp.CreateResponse(ca.cert, ca.cert, ocsp.Response{
		Status:       status,
		SerialNumber: cert.SerialNumber,
		ThisUpdate:   now.Add(-time.Minute),
		NextUpdate:   now.Add(time.Hour),
		RevokedAt:    now.Add(-time.Hour),
	}, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHandshake runs real TLS handshakes on 127.0.0.1 against Go servers and checks the error types and facts.
func TestHandshake(t *testing.T) {
	dir := t.TempDir()
	ca := newRootCA(t, "Test Root")
	other := newRootCA(t, "Other Root")
	crlSrv := newHTTPServer(t)

	// A CRL of the root revoking nothing, for the intermediate.
	rootCRL := crlSrv.set("/root.crl", ca.freshCRL(t))
	// The intermediate's CRL (filled below once serials exist).
	interCRL := crlSrv.srv.URL + "/inter.crl"
	revokedInter := ca.issue(t, "Revoked Intermediate", leafOpts{isCA: true, crl: []string{crlSrv.srv.URL + "/root-revoking.crl"}})
	crlSrv.set("/root-revoking.crl", ca.freshCRL(t, revokedInter.cert.SerialNumber))

	interWithCRL := ca.issue(t, "Intermediate CRL", leafOpts{isCA: true, crl: []string{rootCRL}})
	// Leaves.
	plain := ca.issue(t, "plain", leafOpts{dns: []string{testHost}})
	wrongName := ca.issue(t, "wrong", leafOpts{dns: []string{"other.test"}})
	expired := ca.issue(t, "expired", leafOpts{dns: []string{testHost}, notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	foreign := other.issue(t, "foreign", leafOpts{dns: []string{testHost}})
	crlGood := interWithCRL.ca.issue(t, "crl good", leafOpts{dns: []string{testHost}, crl: []string{interCRL}})
	crlRevoked := interWithCRL.ca.issue(t, "crl revoked", leafOpts{dns: []string{testHost}, crl: []string{interCRL}})
	crlSrv.set("/inter.crl", interWithCRL.ca.freshCRL(t, crlRevoked.cert.SerialNumber, big.NewInt(12345)))
	underRevokedInter := revokedInter.ca.issue(t, "under revoked", leafOpts{dns: []string{testHost}})
	deadSource := ca.issue(t, "dead source", leafOpts{dns: []string{testHost}, ocsp: []string{closedURL(t, "/ocsp")}, crl: []string{closedURL(t, "/x.crl")}})
	ldapOnly := ca.issue(t, "ldap only", leafOpts{dns: []string{testHost}, crl: []string{"ldap://ldap.test/cn=crl"}})

	stapledGood := plain.tlsCert()
	stapledGood.OCSPStaple = stapledResponse(t, ca, plain.cert, ocsp.Good)
	stapledRevoked := plain.tlsCert()
	stapledRevoked.OCSPStaple = stapledResponse(t, ca, plain.cert, ocsp.Revoked)
	stapledGarbageCRL := crlRevoked.tlsCert(interWithCRL.cert)
	stapledGarbageCRL.OCSPStaple = []byte{0x30, 0x03, 0x0a, 0x01, 0x00}

	caFile := ca.file(t, dir)
	def, err := New(Default, []string{caFile}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := New(MSSante, []string{caFile}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	type check func(t *testing.T, err error, f FactsSnapshot)
	noErr := func(t *testing.T, err error, f FactsSnapshot) {
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if !f.Verified || len(f.ServerChain) == 0 || f.Version == 0 || f.CipherSuite == 0 {
			t.Fatalf("facts %+v", f)
		}
	}
	state := func(s RevocationState, source string) check {
		return func(t *testing.T, err error, f FactsSnapshot) {
			noErr(t, err, f)
			if f.Revocation.State != s || f.Revocation.Source != source {
				t.Fatalf("revocation %+v, want %s from %q", f.Revocation, s, source)
			}
		}
	}
	verifyErr := func(target any) check {
		return func(t *testing.T, err error, f FactsSnapshot) {
			var cve *tls.CertificateVerificationError
			if !errors.As(err, &cve) {
				t.Fatalf("want *tls.CertificateVerificationError, got %T %v", err, err)
			}
			switch target.(type) {
			case x509.HostnameError:
				var he x509.HostnameError
				if !errors.As(err, &he) {
					t.Fatalf("want x509.HostnameError, got %v", err)
				}
			case x509.UnknownAuthorityError:
				var ue x509.UnknownAuthorityError
				if !errors.As(err, &ue) {
					t.Fatalf("want x509.UnknownAuthorityError, got %v", err)
				}
			case x509.CertificateInvalidError:
				var ie x509.CertificateInvalidError
				if !errors.As(err, &ie) || ie.Reason != x509.Expired {
					t.Fatalf("want x509.CertificateInvalidError Expired, got %v", err)
				}
			}
			if f.Verified || len(f.ServerChain) == 0 {
				t.Fatalf("facts after verification failure: %+v (want the unverified chain, Verified false)", f)
			}
		}
	}
	revErr := func(kind error, source string, depth int) check {
		return func(t *testing.T, err error, f FactsSnapshot) {
			var re *RevocationError
			if !errors.As(err, &re) || !errors.Is(err, kind) || re.Source != source || re.Depth != depth {
				t.Fatalf("want *RevocationError{%v, %q, depth %d}, got %T %v", kind, source, depth, err, err)
			}
			var op *net.OpError
			if errors.As(err, &op) {
				t.Fatalf("a RevocationError must not unwrap to *net.OpError: %v", err)
			}
			if !f.Verified || !errors.Is(f.VerifyErr, kind) || len(f.ServerChain) == 0 {
				t.Fatalf("facts %+v", f)
			}
		}
	}

	tests := []struct {
		name  string
		p     *Policy
		cert  tls.Certificate
		check check
	}{
		{"default good chain no source", def, plain.tlsCert(), state(Unknown, "")},
		{"default wrong name", def, wrongName.tlsCert(), verifyErr(x509.HostnameError{})},
		{"default expired", def, expired.tlsCert(), verifyErr(x509.CertificateInvalidError{})},
		{"default other CA", def, foreign.tlsCert(), verifyErr(x509.UnknownAuthorityError{})},
		{"default CRL good", def, crlGood.tlsCert(interWithCRL.cert), state(Good, SourceCRL)},
		{"default CRL revoked", def, crlRevoked.tlsCert(interWithCRL.cert), revErr(ErrRevoked, SourceCRL, 0)},
		{"default intermediate revoked", def, underRevokedInter.tlsCert(revokedInter.cert), revErr(ErrRevoked, SourceCRL, 1)},
		{"default stapled good", def, stapledGood, state(Good, SourceOCSPStapled)},
		{"default stapled revoked", def, stapledRevoked, revErr(ErrRevoked, SourceOCSPStapled, 0)},
		{"default bad staple then CRL", def, stapledGarbageCRL, revErr(ErrRevoked, SourceCRL, 0)},
		{"default dead sources", def, deadSource.tlsCert(), state(Unknown, SourceCRL)},
		{"default ldap only", def, ldapOnly.tlsCert(), state(Unknown, SourceCRL)},
		{"mssante CRL good", ms, crlGood.tlsCert(interWithCRL.cert), func(t *testing.T, err error, f FactsSnapshot) {
			state(Good, SourceCRL)(t, err, f)
			if f.Version != tls.VersionTLS12 || (f.CipherSuite != 0xC030 && f.CipherSuite != 0xC02F) || len(f.ChainRevocation) != 2 {
				t.Fatalf("mssante facts %+v", f)
			}
		}},
		{"mssante stapled good, root-issued", ms, stapledGood, state(Good, SourceOCSPStapled)},
		{"mssante no source", ms, plain.tlsCert(), revErr(ErrRevocationUnavailable, "", 0)},
		{"mssante dead sources", ms, deadSource.tlsCert(), revErr(ErrRevocationUnavailable, SourceCRL, 0)},
		{"mssante intermediate without source", ms, underRevokedInter.tlsCert(revokedInter.cert), revErr(ErrRevoked, SourceCRL, 1)},
		{"mssante wrong name", ms, wrongName.tlsCert(), verifyErr(x509.HostnameError{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, tt.cert)
			facts := &Facts{}
			err := dial(t, tt.p, addr, facts)
			tt.check(t, err, facts.Snapshot())
		})
	}

	t.Run("mssante dead sources error detail", func(t *testing.T) {
		facts := &Facts{}
		err := dial(t, ms, serve(t, deadSource.tlsCert()), facts)
		var fe *FetchError
		if !errors.Is(err, ErrRevocationUnavailable) || !errors.As(facts.Snapshot().Revocation.Err, &fe) {
			t.Fatalf("err %v, status %+v", err, facts.Snapshot().Revocation)
		}
		var re *RevocationError
		if !errors.As(err, &re) || !errors.As(re.Err, &fe) {
			t.Fatalf("RevocationError.Err should carry the *FetchError: %v", err)
		}
	})
	t.Run("mssante CBC-only server", func(t *testing.T) {
		addr := startTLS(t, &tls.Config{
			Certificates: []tls.Certificate{crlGood.tlsCert(interWithCRL.cert)},
			MaxVersion:   tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA},
		})
		facts := &Facts{}
		err := dial(t, ms, addr, facts)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) || op.Op != "remote error" {
			t.Fatalf("want a remote handshake_failure alert, got %T %v", err, err)
		}
		if f := facts.Snapshot(); f.Verified || f.CipherSuite != 0 {
			t.Fatalf("facts %+v", f)
		}
		// The default policy negotiates with the same server.
		if err := dial(t, def, addr, nil); err != nil {
			t.Fatalf("default policy against CBC server: %v", err)
		}
	})
	t.Run("mssante refuses TLS 1.3-only server", func(t *testing.T) {
		addr := startTLS(t, &tls.Config{Certificates: []tls.Certificate{crlGood.tlsCert(interWithCRL.cert)}, MinVersion: tls.VersionTLS13})
		err := dial(t, ms, addr, nil)
		var op *net.OpError
		if !errors.As(err, &op) {
			t.Fatalf("want a protocol_version alert, got %T %v", err, err)
		}
	})
	t.Run("cipher check in VerifyConnection", func(t *testing.T) {
		// Defence in depth: a policy whose Config would allow a suite its list does not (a bug elsewhere) is
		// still refused by VerifyConnection.
		narrow := *def
		narrow.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
		narrow.MaxVersion = tls.VersionTLS12
		cfg := narrow.Base(testHost, nil)
		cfg.CipherSuites = nil // the pre-handshake restriction "forgotten"
		facts := &Facts{}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return narrow.verifyConnection(cs, facts) }
		addr := startTLS(t, &tls.Config{Certificates: []tls.Certificate{plain.tlsCert()}, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}})
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			conn.Close()
		}
		var ce *CipherError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCipherNotAllowed) || ce.Suite != tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 {
			t.Fatalf("want *CipherError, got %T %v", err, err)
		}
		if f := facts.Snapshot(); !f.Verified || !errors.Is(f.VerifyErr, ErrCipherNotAllowed) {
			t.Fatalf("facts %+v", f)
		}
	})
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
