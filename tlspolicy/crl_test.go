package tlspolicy

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// crlOpts describes a test CRL; the zero value is a complete CRL valid from an hour ago to an hour from now.
type crlOpts struct {
	number                 int64 // CRL number; 0 = the CA's next number
	thisUpdate, nextUpdate time.Time
	revoked                []*big.Int
	exts                   []pkix.Extension // extra CRL extensions
	entryExts              []pkix.Extension // extra extensions of every entry
}

// crlWith signs a CRL of ca with o.
func (ca *testCA) crlWith(t testing.TB, o crlOpts) []byte {
	t.Helper()
	if o.number == 0 {
		ca.mu.Lock()
		ca.serial++
		o.number = ca.serial
		ca.mu.Unlock()
	}
	if o.thisUpdate.IsZero() {
		o.thisUpdate = time.Now().Add(-time.Hour)
	}
	if o.nextUpdate.IsZero() {
		o.nextUpdate = time.Now().Add(time.Hour)
	}
	var entries []x509.RevocationListEntry
	for _, s := range o.revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-30 * time.Minute),
			ReasonCode: 1, ExtraExtensions: o.entryExts})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(o.number), ThisUpdate: o.thisUpdate, NextUpdate: o.nextUpdate,
		RevokedCertificateEntries: entries, ExtraExtensions: o.exts,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// idpSpec is an issuingDistributionPoint to encode.
type idpSpec struct {
	uris                                          []string
	relative                                      bool // nameRelativeToCRLIssuer instead of fullName
	onlyUser, onlyCA, someReasons, indirect, attr bool
}

// idpExt encodes an issuingDistributionPoint extension (critical, as RFC 5280 requires).
func idpExt(s idpSpec) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if len(s.uris) > 0 || s.relative {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				if s.relative {
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{2, 5, 4, 3})
							b.AddASN1(cbasn1.PrintableString, func(b *cryptobyte.Builder) { b.AddBytes([]byte("part2")) })
						})
					})
					return
				}
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, u := range s.uris {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
					}
				})
			})
		}
		flag := func(n uint8, v bool) {
			if v {
				b.AddASN1(cbasn1.Tag(n).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xFF) })
			}
		}
		flag(1, s.onlyUser)
		flag(2, s.onlyCA)
		if s.someReasons {
			// keyCompromise only: BIT STRING with 7 unused bits... encoded as implicit [3].
			b.AddASN1(cbasn1.Tag(3).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0x06, 0x40}) })
		}
		flag(4, s.indirect)
		flag(5, s.attr)
	})
	return pkix.Extension{Id: oidIssuingDistribution, Critical: true, Value: b.BytesOrPanic()}
}

// deltaExt marks a CRL as a delta of base number base.
func deltaExt(t testing.TB, base int64) pkix.Extension {
	v, err := asn1.Marshal(big.NewInt(base))
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidDeltaCRLIndicator, Critical: true, Value: v}
}

var oidUnknownExt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}

func unknownExt(critical bool) pkix.Extension {
	return pkix.Extension{Id: oidUnknownExt, Critical: critical, Value: []byte{0x05, 0x00}}
}

// TestCRLStatusScope feeds CRLStatus every kind of CRL an auditor worries about: each must either prove the status
// of the certificate it covers, or be refused with the reason.
func TestCRLStatusScope(t *testing.T) {
	ca := newRootCA(t, "Scope Root")
	impostor := newRootCA(t, "Scope Root") // same name, other key
	const dp = "http://crl.test/ca-part1.crl"
	leaf := ca.issue(t, "leaf", leafOpts{ec: true, crl: []string{dp}})
	gone := ca.issue(t, "gone", leafOpts{ec: true, crl: []string{dp}})
	inter := ca.issue(t, "inter", leafOpts{isCA: true, crl: []string{dp}})
	certIssuer := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 29}, Critical: true, Value: []byte{0x30, 0x00}}
	now := time.Now()
	tests := []struct {
		name  string
		crl   []byte
		cert  *x509.Certificate
		state RevocationState
		err   error
	}{
		{"complete, good", ca.crlWith(t, crlOpts{revoked: []*big.Int{gone.cert.SerialNumber}}), leaf.cert, Good, nil},
		{"complete, revoked", ca.crlWith(t, crlOpts{revoked: []*big.Int{gone.cert.SerialNumber}}), gone.cert, Revoked, nil},
		{"validly signed delta CRL", ca.crlWith(t, crlOpts{exts: []pkix.Extension{deltaExt(t, 1)}}), gone.cert, Unknown, ErrDeltaCRL},
		{"unknown critical extension", ca.crlWith(t, crlOpts{exts: []pkix.Extension{unknownExt(true)}}), leaf.cert, Unknown, ErrCRLCriticalExtension},
		{"unknown non-critical extension", ca.crlWith(t, crlOpts{exts: []pkix.Extension{unknownExt(false)}}), leaf.cert, Good, nil},
		{"unknown critical entry extension", ca.crlWith(t, crlOpts{revoked: []*big.Int{big.NewInt(7)}, entryExts: []pkix.Extension{unknownExt(true)}}), leaf.cert, Unknown, ErrCRLCriticalExtension},
		{"indirect CRL entry (certificateIssuer)", ca.crlWith(t, crlOpts{revoked: []*big.Int{big.NewInt(7)}, entryExts: []pkix.Extension{certIssuer}}), leaf.cert, Unknown, ErrCRLCriticalExtension},
		{"IDP names this URL", ca.crlWith(t, crlOpts{revoked: []*big.Int{gone.cert.SerialNumber}, exts: []pkix.Extension{idpExt(idpSpec{uris: []string{"ldap://x/cn=crl", dp}})}}), gone.cert, Revoked, nil},
		{"IDP names this URL, host case differs", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{uris: []string{"HTTP://CRL.test/ca-part1.crl"}})}}), leaf.cert, Good, nil},
		{"another partition of the same CA", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{uris: []string{"http://crl.test/ca-part2.crl"}})}}), gone.cert, Unknown, ErrCRLScope},
		{"partition named relative to the issuer", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{relative: true})}}), gone.cert, Unknown, ErrCRLScope},
		{"user certificates only, leaf", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{uris: []string{dp}, onlyUser: true})}}), leaf.cert, Good, nil},
		{"user certificates only, CA", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{onlyUser: true})}}), inter.cert, Unknown, ErrCRLScope},
		{"CA certificates only, CA", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{onlyCA: true})}}), inter.cert, Good, nil},
		{"CA certificates only, leaf", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{onlyCA: true})}}), gone.cert, Unknown, ErrCRLScope},
		{"only some reasons", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{uris: []string{dp}, someReasons: true})}}), gone.cert, Unknown, ErrCRLScope},
		{"indirect CRL", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{uris: []string{dp}, indirect: true})}}), gone.cert, Unknown, ErrCRLScope},
		{"attribute certificates only", ca.crlWith(t, crlOpts{exts: []pkix.Extension{idpExt(idpSpec{attr: true})}}), gone.cert, Unknown, ErrCRLScope},
		{"malformed IDP", ca.crlWith(t, crlOpts{exts: []pkix.Extension{{Id: oidIssuingDistribution, Critical: true, Value: []byte{0x30, 0x03, 0x81, 0x01, 0x01}}}}), gone.cert, Unknown, ErrCRLMalformed},
		{"signed by the wrong key", impostor.crlWith(t, crlOpts{}), leaf.cert, Unknown, ErrCRLSignature},
		{"expired", ca.crlWith(t, crlOpts{thisUpdate: now.Add(-3 * time.Hour), nextUpdate: now.Add(-time.Hour)}), leaf.cert, Unknown, ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rl := CRLStatus(tt.crl, tt.cert, ca.cert, dp, now)
			if s.State != tt.state || (rl != nil) != (tt.state != Unknown) {
				t.Fatalf("state %q (%v), list %v; want %q", s.State, s.Err, rl != nil, tt.state)
			}
			if tt.state == Unknown && s.Err == nil || tt.err != nil && !errors.Is(s.Err, tt.err) {
				t.Fatalf("err %v, want %v", s.Err, tt.err)
			}
		})
	}
}

func TestParseIDP(t *testing.T) {
	idp, err := parseIDP(idpExt(idpSpec{uris: []string{"http://a/1.crl", "http://a/2.crl"}, onlyUser: true}).Value)
	if err != nil || !idp.named || len(idp.uris) != 2 || idp.uris[1] != "http://a/2.crl" || !idp.onlyUser || idp.onlyCA {
		t.Fatalf("%+v %v", idp, err)
	}
	// Cases found by review: a BOOLEAN must be DER (0x00 or 0xFF), trailing data is refused.
	for _, bad := range [][]byte{
		{0x30, 0x03, 0x81, 0x01, 0x01},
		{0x30, 0x00, 0x00},
		{0x31, 0x00},
		{0x30, 0x02, 0xA0, 0x00},
		{0x30, 0x04, 0xA0, 0x02, 0x05, 0x00},
	} {
		if _, err := parseIDP(bad); !errors.Is(err, ErrCRLMalformed) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

// crlBench is one CA with a CRL distribution point on a real loopback HTTP server, a good and a revoked server
// certificate naming it, and TLS servers presenting them.
type crlBench struct {
	ca, impostor *testCA
	srv          *httpServer
	url          string
	good, gone   issued
	goodAddr     string
	goneAddr     string
	caFile       string
}

func newCRLBench(t *testing.T) *crlBench {
	b := &crlBench{ca: newRootCA(t, "Partitioned Root"), srv: newHTTPServer(t)}
	b.impostor = newRootCA(t, "Partitioned Root")
	b.url = b.srv.set("/part1.crl", nil)
	b.good = b.ca.issue(t, "crl good", leafOpts{dns: []string{testHost}, crl: []string{b.url}})
	b.gone = b.ca.issue(t, "crl gone", leafOpts{dns: []string{testHost}, crl: []string{b.url}})
	b.goodAddr, b.goneAddr = serve(t, b.good.tlsCert()), serve(t, b.gone.tlsCert())
	b.caFile = b.ca.file(t, t.TempDir())
	return b
}

// misleading returns the CRLs that must never prove anything about the revoked certificate.
func (b *crlBench) misleading(t *testing.T) []struct {
	name string
	crl  []byte
	err  error
} {
	now := time.Now()
	idp := func(u string) []pkix.Extension { return []pkix.Extension{idpExt(idpSpec{uris: []string{u}})} }
	return []struct {
		name string
		crl  []byte
		err  error
	}{
		{"validly signed delta CRL", b.ca.crlWith(t, crlOpts{number: 500, exts: []pkix.Extension{deltaExt(t, 100)}}), ErrDeltaCRL},
		{"another partition of the same CA", b.ca.crlWith(t, crlOpts{number: 501, exts: idp(b.srv.srv.URL + "/part2.crl")}), ErrCRLScope},
		{"unknown critical extension", b.ca.crlWith(t, crlOpts{number: 502, exts: []pkix.Extension{unknownExt(true)}}), ErrCRLCriticalExtension},
		{"signed by the wrong key", b.impostor.crlWith(t, crlOpts{number: 503}), ErrCRLSignature},
		{"expired", b.ca.crlWith(t, crlOpts{number: 504, thisUpdate: now.Add(-3 * time.Hour), nextUpdate: now.Add(-time.Hour)}), ErrStale},
	}
}

// TestCRLServerMisleading serves each malformed or misleading CRL from a real HTTP server on 127.0.0.1 to real TLS
// handshakes, with and without a cached CRL: none may turn the revoked server certificate good, none may replace the
// cached CRL, and an older CRL served after a newer one changes nothing.
func TestCRLServerMisleading(t *testing.T) {
	b := newCRLBench(t)
	cache := filepath.Join(t.TempDir(), "crl")
	ms, err := New(MSSante, []string{b.caFile}, cache)
	if err != nil {
		t.Fatal(err)
	}
	noCache, err := New(MSSante, []string{b.caFile}, "")
	if err != nil {
		t.Fatal(err)
	}
	def, err := New(Default, []string{b.caFile}, "")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		state  RevocationState
		source string
		kind   error // error of the handshake
	}
	check := func(t *testing.T, p *Policy, addr string, w want) FactsSnapshot {
		t.Helper()
		facts := &Facts{}
		err := dial(t, p, addr, facts)
		f := facts.Snapshot()
		if f.Revocation.State != w.state || f.Revocation.Source != w.source || (w.kind == nil) != (err == nil) ||
			w.kind != nil && !errors.Is(err, w.kind) {
			t.Fatalf("status %+v, err %v; want %s from %s, %v", f.Revocation, err, w.state, w.source, w.kind)
		}
		return f
	}

	// The newest CRL (number 100) revokes gone; it is cached.
	newest := b.ca.crlWith(t, crlOpts{number: 100, revoked: []*big.Int{b.gone.cert.SerialNumber}})
	b.srv.set("/part1.crl", newest)
	check(t, ms, b.goneAddr, want{Revoked, SourceCRL, ErrRevoked})
	check(t, ms, b.goodAddr, want{Good, SourceCRL, nil})
	cached := func(t *testing.T) {
		t.Helper()
		data, err := os.ReadFile(CRLCachePath(cache, b.url))
		if err != nil || !bytes.Equal(data, newest) {
			t.Fatalf("the cached CRL is no longer the newest one (%v)", err)
		}
	}
	cached(t)

	t.Run("older CRL after a newer one", func(t *testing.T) {
		older := b.ca.crlWith(t, crlOpts{number: 99})
		b.srv.set("/part1.crl", older)
		f := check(t, ms, b.goneAddr, want{Revoked, SourceCRLCache, ErrRevoked})
		var rb *CRLRollbackError
		if !errors.As(f.Revocation.Fallback, &rb) || rb.CachedNumber != "100" || rb.FetchedNumber != "99" {
			t.Fatalf("fallback %v", f.Revocation.Fallback)
		}
		cached(t)
		// Same number, earlier thisUpdate: older too.
		b.srv.set("/part1.crl", b.ca.crlWith(t, crlOpts{number: 100, thisUpdate: time.Now().Add(-2 * time.Hour)}))
		check(t, ms, b.goneAddr, want{Revoked, SourceCRLCache, ErrRevoked})
		cached(t)
		// Without a cache the older CRL is all there is: it is valid and answers (the cache is what remembers).
		b.srv.set("/part1.crl", older)
		check(t, noCache, b.goneAddr, want{Good, SourceCRL, nil})
	})
	for _, m := range b.misleading(t) {
		t.Run(m.name, func(t *testing.T) {
			b.srv.set("/part1.crl", m.crl)
			hits := b.srv.hits.Load()
			// With the cache: the cached CRL answers, the reason is kept, the cache is unchanged.
			f := check(t, ms, b.goneAddr, want{Revoked, SourceCRLCache, ErrRevoked})
			if !errors.Is(f.Revocation.Fallback, m.err) {
				t.Fatalf("fallback %v, want %v", f.Revocation.Fallback, m.err)
			}
			check(t, ms, b.goodAddr, want{Good, SourceCRLCache, nil})
			cached(t)
			// Without a cache: unknown. mssante refuses the connection, default lets it through as unknown; neither
			// ever says good.
			f = check(t, noCache, b.goneAddr, want{Unknown, SourceCRL, ErrRevocationUnavailable})
			if !errors.Is(f.Revocation.Err, m.err) {
				t.Fatalf("reason %v, want %v", f.Revocation.Err, m.err)
			}
			check(t, def, b.goneAddr, want{Unknown, SourceCRL, nil})
			if b.srv.hits.Load()-hits < 4 {
				t.Fatalf("the CRL server saw %d requests", b.srv.hits.Load()-hits)
			}
		})
	}
	// A newer complete CRL replaces the cached one (the cache moves forward) and unrevokes nothing it should not.
	newer := b.ca.crlWith(t, crlOpts{number: 101, revoked: []*big.Int{b.gone.cert.SerialNumber, big.NewInt(42)}})
	b.srv.set("/part1.crl", newer)
	check(t, ms, b.goneAddr, want{Revoked, SourceCRL, ErrRevoked})
	if data, err := os.ReadFile(CRLCachePath(cache, b.url)); err != nil || !bytes.Equal(data, newer) {
		t.Fatalf("cache not moved to the newer CRL: %v", err)
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "crl-") {
		t.Fatalf("cache dir holds %v", entries)
	}
}

// TestCRLExpiredWithCache: an expired CRL served while the cached one is still valid gives the cached answer;
// once the cached one has expired too, mssante refuses the connection.
func TestCRLExpiredWithCache(t *testing.T) {
	b := newCRLBench(t)
	cache := t.TempDir()
	ms, err := New(MSSante, []string{b.caFile}, cache)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b.srv.set("/part1.crl", b.ca.crlWith(t, crlOpts{number: 1, thisUpdate: start.Add(-time.Hour), nextUpdate: start.Add(2 * time.Hour),
		revoked: []*big.Int{b.gone.cert.SerialNumber}}))
	if err := dial(t, ms, b.goodAddr, nil); err != nil {
		t.Fatal(err)
	}
	b.srv.set("/part1.crl", b.ca.crlWith(t, crlOpts{number: 2, thisUpdate: start.Add(-3 * time.Hour), nextUpdate: start.Add(-time.Hour)}))
	for _, tc := range []struct {
		name  string
		at    time.Duration // clock offset
		addr  string
		state RevocationState
		kind  error
	}{
		{"cache valid, good", 0, b.goodAddr, Good, nil},
		{"cache valid, revoked", 0, b.goneAddr, Revoked, ErrRevoked},
		{"cache expired too", 3 * time.Hour, b.goodAddr, Unknown, ErrRevocationUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms.Revocation.Now = func() time.Time { return time.Now().Add(tc.at) }
			facts := &Facts{}
			err := dial(t, ms, tc.addr, facts)
			f := facts.Snapshot()
			if f.Revocation.State != tc.state || f.Revocation.Source != SourceCRLCache || (tc.kind == nil) != (err == nil) ||
				tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Fatalf("status %+v, err %v", f.Revocation, err)
			}
			if tc.state == Unknown && !errors.Is(f.Revocation.Err, ErrStale) || tc.state != Unknown && !errors.Is(f.Revocation.Fallback, ErrStale) {
				t.Fatalf("reason %v / fallback %v, want ErrStale", f.Revocation.Err, f.Revocation.Fallback)
			}
		})
	}
}
