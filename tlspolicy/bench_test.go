package tlspolicy

import (
	"crypto/tls"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// BenchmarkHandshake measures a full TLS 1.2/1.3 handshake on 127.0.0.1 with the revocation check, against a
// baseline handshake in the same run whose certificate names no revocation source.
func BenchmarkHandshake(b *testing.B) {
	ca := newRootCA(b, "Bench Root")
	srv := newHTTPServer(b)
	crlURL := srv.set("/ca.crl", nil)
	plain := ca.issue(b, "bench plain", leafOpts{dns: []string{testHost}})
	withCRL := ca.issue(b, "bench crl", leafOpts{dns: []string{testHost}, crl: []string{crlURL}})
	srv.set("/ca.crl", ca.freshCRL(b, big.NewInt(7)))
	stapled := plain.tlsCert()
	stapled.OCSPStaple = stapledResponse(b, ca, plain.cert, ocsp.Good)
	caFile := ca.file(b, b.TempDir())
	def, err := New(Default, []string{caFile}, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ms, err := New(MSSante, []string{caFile}, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		p    *Policy
		cert tls.Certificate
	}{
		{"baseline-default-no-source", def, plain.tlsCert()},
		{"default-crl-http", def, withCRL.tlsCert()},
		{"mssante-crl-http", ms, withCRL.tlsCert()},
		{"mssante-ocsp-stapled", ms, stapled},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			addr := serve(b, c.cert)
			start := time.Now()
			for b.Loop() {
				if err := dial(b, c.p, addr, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/handshake")
		})
	}
}

// BenchmarkCRLStatus measures deciding from a CRL of 10 000 entries against a baseline CRL of one entry.
func BenchmarkCRLStatus(b *testing.B) {
	ca := newRootCA(b, "Bench CRL Root")
	leaf := ca.issue(b, "bench leaf", leafOpts{ec: true})
	many := make([]*big.Int, 10000)
	for i := range many {
		many[i] = big.NewInt(int64(i) + 1000)
	}
	for _, c := range []struct {
		name string
		crl  []byte
	}{{"baseline-1-entry", ca.freshCRL(b, big.NewInt(1))}, {"10000-entries", ca.freshCRL(b, many...)}} {
		b.Run(c.name, func(b *testing.B) {
			now := time.Now()
			b.SetBytes(int64(len(c.crl)))
			for b.Loop() {
				if s, _ := CRLStatus(c.crl, leaf.cert, ca.cert, "", now); s.State != Good {
					b.Fatal(s)
				}
			}
		})
	}
}
