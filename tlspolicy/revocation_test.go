package tlspolicy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// TestOCSPOpenSSLResponder checks certificates against the real OpenSSL responder over HTTP on 127.0.0.1, through
// a TLS handshake and through Checker.Check.
func TestOCSPOpenSSLResponder(t *testing.T) {
	ca := newRootCA(t, "OCSP Root")
	signer := ca.issue(t, "OCSP Signer", leafOpts{ocspSign: true})
	// The responder URL must be in the certificates: start the responder with an empty index first.
	o := newOpenSSLOCSP(t, ca, signer.cert, signer.key)
	good := ca.issue(t, "ocsp good", leafOpts{dns: []string{testHost}, ocsp: []string{o.URL()}})
	revoked := ca.issue(t, "ocsp revoked", leafOpts{dns: []string{testHost}, ocsp: []string{o.URL()}})
	absent := ca.issue(t, "ocsp absent", leafOpts{dns: []string{testHost}, ocsp: []string{o.URL()}})
	o.setIndex(t, indexEntry{cert: good.cert}, indexEntry{cert: revoked.cert, revoked: true})

	caFile := ca.file(t, t.TempDir())
	def, err := New(Default, []string{caFile}, "")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := New(MSSante, []string{caFile}, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		p     *Policy
		leaf  issued
		state RevocationState
		kind  error
	}{
		{"default good", def, good, Good, nil},
		{"default revoked", def, revoked, Revoked, ErrRevoked},
		{"default not in index", def, absent, Unknown, nil},
		{"mssante good", ms, good, Good, nil},
		{"mssante revoked", ms, revoked, Revoked, ErrRevoked},
		{"mssante not in index", ms, absent, Unknown, ErrRevocationUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := &Facts{}
			err := dial(t, tt.p, serve(t, tt.leaf.tlsCert()), facts)
			f := facts.Snapshot()
			if f.Revocation.State != tt.state || f.Revocation.Source != SourceOCSP {
				t.Fatalf("status %+v, want %s from ocsp", f.Revocation, tt.state)
			}
			if tt.kind == nil && err != nil || tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Fatalf("err %v, want %v", err, tt.kind)
			}
		})
	}
	if o.posts.Load() == 0 {
		t.Fatal("no POST reached the responder")
	}
	t.Run("GET fallback", func(t *testing.T) {
		o.postRefused.Store(true)
		defer o.postRefused.Store(false)
		gets := o.gets.Load()
		s := def.Revocation.Check(context.Background(), revoked.cert, ca.cert, nil)
		if s.State != Revoked || s.Source != SourceOCSP || s.Reason != ocsp.KeyCompromise || o.gets.Load() != gets+1 {
			t.Fatalf("status %+v, GETs %d→%d", s, gets, o.gets.Load())
		}
	})
}

// TestOCSPStatusOpenSSL feeds OCSPStatus responses produced by `openssl ocsp` (offline responder mode).
func TestOCSPStatusOpenSSL(t *testing.T) {
	ca := newRootCA(t, "Parser Root")
	other := newRootCA(t, "Parser Other")
	delegated := ca.issue(t, "Delegated", leafOpts{ocspSign: true})
	noEKU := ca.issue(t, "No EKU", leafOpts{ec: true})
	foreignSigner := other.issue(t, "Foreign Signer", leafOpts{ocspSign: true})
	good := ca.issue(t, "good", leafOpts{dns: []string{testHost}, ec: true})
	revoked := ca.issue(t, "revoked", leafOpts{dns: []string{testHost}, ec: true})
	absent := ca.issue(t, "absent", leafOpts{dns: []string{testHost}, ec: true})
	entries := []indexEntry{{cert: good.cert}, {cert: revoked.cert, revoked: true}}

	byCA := newOpenSSLOCSP(t, ca, ca.cert, ca.key, entries...)
	byDelegated := newOpenSSLOCSP(t, ca, delegated.cert, delegated.key, entries...)
	byNoEKU := newOpenSSLOCSP(t, ca, noEKU.cert, noEKU.key, entries...)
	byForeign := newOpenSSLOCSP(t, ca, foreignSigner.cert, foreignSigner.key, entries...)
	byOtherCA := newOpenSSLOCSP(t, ca, other.cert, other.key, entries...)

	req := func(c *x509.Certificate) []byte {
		r, err := ocsp.CreateRequest(c, ca.cert, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	now := time.Now()
	tests := []struct {
		name  string
		resp  []byte
		cert  *x509.Certificate
		now   time.Time
		state RevocationState
		err   error
	}{
		{"CA-signed good", byCA.respond(t, req(good.cert)), good.cert, now, Good, nil},
		{"CA-signed revoked", byCA.respond(t, req(revoked.cert)), revoked.cert, now, Revoked, nil},
		{"CA-signed unknown", byCA.respond(t, req(absent.cert)), absent.cert, now, Unknown, ErrOCSPUnknown},
		{"delegated good", byDelegated.respond(t, req(good.cert)), good.cert, now, Good, nil},
		{"delegated revoked", byDelegated.respond(t, req(revoked.cert)), revoked.cert, now, Revoked, nil},
		{"delegated without OCSP signing EKU", byNoEKU.respond(t, req(good.cert)), good.cert, now, Unknown, ErrResponderNotAuth},
		{"responder from another CA", byForeign.respond(t, req(good.cert)), good.cert, now, Unknown, nil},
		{"signed by another CA", byOtherCA.respond(t, req(good.cert)), good.cert, now, Unknown, nil},
		{"response for another certificate", byCA.respond(t, req(good.cert)), revoked.cert, now, Unknown, nil},
		{"good but stale", byCA.respond(t, req(good.cert)), good.cert, now.Add(48 * time.Hour), Unknown, ErrStale},
		{"revoked stays revoked when stale", byCA.respond(t, req(revoked.cert)), revoked.cert, now.Add(48 * time.Hour), Revoked, nil},
		{"not yet valid", byCA.respond(t, req(good.cert)), good.cert, now.Add(-time.Hour), Unknown, ErrNotYetValid},
		{"garbage", []byte("not OCSP"), good.cert, now, Unknown, nil},
		{"empty", nil, good.cert, now, Unknown, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := OCSPStatus(tt.resp, tt.cert, ca.cert, tt.now)
			if s.State != tt.state {
				t.Fatalf("state %q (%v), want %q", s.State, s.Err, tt.state)
			}
			if tt.state == Unknown && s.Err == nil || tt.err != nil && !errors.Is(s.Err, tt.err) {
				t.Fatalf("err %v, want %v", s.Err, tt.err)
			}
			if tt.state == Revoked && (s.Reason != ocsp.KeyCompromise || s.RevokedAt.IsZero()) {
				t.Fatalf("revoked status %+v", s)
			}
		})
	}
}

func TestCRLStatus(t *testing.T) {
	ca := newRootCA(t, "CRL Root")
	impostor := newRootCA(t, "CRL Root") // same name, other key
	other := newRootCA(t, "CRL Other")
	leaf := ca.issue(t, "leaf", leafOpts{ec: true})
	gone := ca.issue(t, "gone", leafOpts{ec: true})
	now := time.Now()
	crl := ca.freshCRL(t, gone.cert.SerialNumber)
	tests := []struct {
		name  string
		data  []byte
		cert  *x509.Certificate
		now   time.Time
		state RevocationState
		err   error
	}{
		{"good", crl, leaf.cert, now, Good, nil},
		{"revoked", crl, gone.cert, now, Revoked, nil},
		{"PEM", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), gone.cert, now, Revoked, nil},
		{"stale", crl, leaf.cert, now.Add(2 * time.Hour), Unknown, ErrStale},
		{"not yet valid", crl, leaf.cert, now.Add(-2 * time.Hour), Unknown, ErrNotYetValid},
		{"other issuer", other.freshCRL(t), leaf.cert, now, Unknown, ErrCRLIssuerMismatch},
		{"bad signature", impostor.freshCRL(t), leaf.cert, now, Unknown, nil},
		{"garbage", []byte("garbage"), leaf.cert, now, Unknown, nil},
		{"truncated", crl[:len(crl)-10], leaf.cert, now, Unknown, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rl := CRLStatus(tt.data, tt.cert, ca.cert, "http://crl.test/ca.crl", tt.now)
			if s.State != tt.state || (rl != nil) != (tt.state != Unknown) {
				t.Fatalf("state %q (%v), list %v; want %q", s.State, s.Err, rl != nil, tt.state)
			}
			if tt.state == Unknown && s.Err == nil || tt.err != nil && !errors.Is(s.Err, tt.err) {
				t.Fatalf("err %v, want %v", s.Err, tt.err)
			}
		})
	}
}

// TestCRLCache: a valid CRL is cached atomically; when the server is down the cached CRL answers until its
// nextUpdate passes.
func TestCRLCache(t *testing.T) {
	ca := newRootCA(t, "Cache Root")
	srv := newHTTPServer(t)
	u := srv.set("/ca.crl", nil)
	leaf := ca.issue(t, "cached", leafOpts{dns: []string{testHost}, crl: []string{u}})
	gone := ca.issue(t, "cached revoked", leafOpts{dns: []string{testHost}, crl: []string{u}})
	srv.set("/ca.crl", ca.freshCRL(t, gone.cert.SerialNumber))
	cache := filepath.Join(t.TempDir(), "cache") // created on first write
	ms, err := New(MSSante, []string{ca.file(t, t.TempDir())}, cache)
	if err != nil {
		t.Fatal(err)
	}
	good, revoked := serve(t, leaf.tlsCert()), serve(t, gone.tlsCert())

	step := func(name, addr string, state RevocationState, source string, kind error) {
		t.Helper()
		facts := &Facts{}
		err := dial(t, ms, addr, facts)
		f := facts.Snapshot()
		if f.Revocation.State != state || f.Revocation.Source != source || (kind == nil) != (err == nil) || kind != nil && !errors.Is(err, kind) {
			t.Fatalf("%s: status %+v, err %v; want %s from %s, %v", name, f.Revocation, err, state, source, kind)
		}
	}
	step("online good", good, Good, SourceCRL, nil)
	step("online revoked", revoked, Revoked, SourceCRL, ErrRevoked)
	path := CRLCachePath(cache, u)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cache file: %v", err)
	}
	if _, err := x509.ParseRevocationList(data); err != nil {
		t.Fatalf("cached CRL: %v", err)
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "crl-") || !strings.HasSuffix(entries[0].Name(), ".der") {
		t.Fatalf("cache dir holds %v (temp files left?)", entries)
	}

	// A newer CRL replaces the cached one.
	newer := ca.freshCRL(t, gone.cert.SerialNumber)
	srv.set("/ca.crl", newer)
	step("online newer CRL", good, Good, SourceCRL, nil)
	if data, err := os.ReadFile(path); err != nil || !bytes.Equal(data, newer) {
		t.Fatalf("cache not replaced by the newer CRL: %v", err)
	}

	// The server answers garbage: the cache answers.
	srv.set("/ca.crl", []byte("garbage"))
	step("garbage served, cache good", good, Good, SourceCRLCache, nil)
	// The server is down.
	srv.srv.Close()
	step("down, cache good", good, Good, SourceCRLCache, nil)
	step("down, cache revoked", revoked, Revoked, SourceCRLCache, ErrRevoked)
	// Two hours later the cached CRL's nextUpdate has passed: unavailable.
	ms.Revocation.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	step("down, cache stale", good, Unknown, SourceCRLCache, ErrRevocationUnavailable)
	facts := &Facts{}
	_ = dial(t, ms, good, facts)
	var fe *FetchError
	if err := facts.Snapshot().Revocation.Err; !errors.Is(err, ErrStale) || !errors.As(err, &fe) {
		t.Fatalf("stale cache reason: %v", err)
	}
	// Without a cache directory nothing is kept.
	ms.Revocation.Now = nil
	ms.Revocation.CacheDir = ""
	step("down, no cache", good, Unknown, SourceCRL, ErrRevocationUnavailable)
}

func TestFetchLimits(t *testing.T) {
	ca := newRootCA(t, "Fetch Root")
	big := make([]byte, 4096)
	mux := http.NewServeMux()
	mux.HandleFunc("/big.crl", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(big) })
	mux.HandleFunc("/redirect-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusInternalServerError) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tests := []struct {
		url string
		err error
	}{
		{srv.URL + "/big.crl", ErrTooLarge},
		{srv.URL + "/redirect-file", ErrURLScheme},
		{srv.URL + "/loop", ErrTooManyRedirects},
		{"ftp://127.0.0.1/x.crl", ErrURLScheme},
		{"file:///etc/passwd", ErrURLScheme},
		{"ldap:///cn=x", ErrURLScheme},
		{"http:///nohost", ErrURLScheme},
		{srv.URL + "/500", nil},
	}
	c := NewChecker("")
	c.MaxBytes = 1024
	for _, tt := range tests {
		leaf := ca.issue(t, "fetch", leafOpts{ec: true, crl: []string{tt.url}})
		s := c.Check(context.Background(), leaf.cert, ca.cert, nil)
		var fe *FetchError
		if s.State != Unknown || !errors.As(s.Err, &fe) || tt.err != nil && !errors.Is(s.Err, tt.err) {
			t.Errorf("%s: %+v, want %v", tt.url, s, tt.err)
		}
		var hs *HTTPStatusError
		if tt.err == nil && (!errors.As(s.Err, &hs) || hs.Code != 500) {
			t.Errorf("%s: want HTTP 500, got %v", tt.url, s.Err)
		}
	}
}

func TestFactsConcurrent(t *testing.T) {
	ca := newRootCA(t, "Facts Root")
	leaf := ca.issue(t, "facts", leafOpts{dns: []string{testHost}})
	p, err := New(Default, []string{ca.file(t, t.TempDir())}, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, leaf.tlsCert())
	facts := &Facts{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			_ = facts.Snapshot()
		}
	}()
	for i := 0; i < 5; i++ {
		if err := dial(t, p, addr, facts); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if f := facts.Snapshot(); !f.Verified || f.ServerName != testHost {
		t.Fatalf("facts %+v", f)
	}
	facts.Reset()
	if f := facts.Snapshot(); f.Verified || f.ServerChain != nil {
		t.Fatalf("after Reset %+v", f)
	}
	var nilFacts *Facts
	nilFacts.RecordError(errors.New("x"))
	if f := nilFacts.Snapshot(); f.Verified || f.ServerChain != nil || f.Version != 0 {
		t.Fatal("nil facts")
	}
}
