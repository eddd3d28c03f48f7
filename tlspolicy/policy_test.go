package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	igc, err := BundledRoots()
	if err != nil {
		t.Fatalf("BundledRoots: %v", err)
	}
	if len(igc) == 0 || !igc[0].IsCA {
		t.Fatalf("bundled roots: %d certificates", len(igc))
	}
	// The bundled root verifies as its own anchor only where it is trusted.
	trusted := func(p *Policy) bool {
		_, err := igc[0].Verify(x509.VerifyOptions{Roots: p.Roots, CurrentTime: igc[0].NotBefore.Add(time.Hour)})
		return err == nil
	}
	tests := []struct {
		name       Name
		min, max   uint16
		suites     []uint16
		requireRev bool
		igc        bool
	}{
		{Default, tls.VersionTLS12, tls.VersionTLS13, nil, false, false},
		{MSSante, tls.VersionTLS12, tls.VersionTLS12, []uint16{0xC030, 0xC02F}, true, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.name), func(t *testing.T) {
			p, err := New(tt.name, nil, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tt.name || p.MinVersion != tt.min || p.MaxVersion != tt.max ||
				!slices.Equal(p.CipherSuites, tt.suites) || p.RequireRevocation != tt.requireRev {
				t.Fatalf("policy %+v", p)
			}
			if got := trusted(p); got != tt.igc {
				t.Fatalf("IGC-Santé root trusted = %v, want %v", got, tt.igc)
			}
			cfg := p.Base("example.org", nil)
			if cfg.InsecureSkipVerify || cfg.ServerName != "example.org" || cfg.RootCAs != p.Roots ||
				cfg.MinVersion != tt.min || cfg.MaxVersion != tt.max || !slices.Equal(cfg.CipherSuites, tt.suites) ||
				cfg.VerifyConnection == nil {
				t.Fatalf("Base config %+v", cfg)
			}
		})
	}
	if _, err := New("tls10", nil, ""); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("unknown name: %v", err)
	}
	// Every mssante suite is one Go implements and considers secure.
	for _, s := range MSSanteCipherSuites {
		found := false
		for _, cs := range tls.CipherSuites() {
			found = found || cs.ID == s
		}
		if !found {
			t.Errorf("suite 0x%04X not in tls.CipherSuites()", s)
		}
	}
}

func TestCAFiles(t *testing.T) {
	dir := t.TempDir()
	ca1 := newRootCA(t, "CA one")
	ca2 := newRootCA(t, "CA two")
	leaf := ca1.issue(t, "leaf", leafOpts{dns: []string{testHost}, ec: true})
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(ecKey(t))
	full := pemOf("CERTIFICATE", ca1.cert.Raw)
	tests := []struct {
		name  string
		path  string
		n     int
		want  error // errors.Is target, nil for success
		aspe  bool  // *fs.PathError expected
		parse bool  // any error expected (x509 parse)
	}{
		{"pem one", write("one.pem", full), 1, nil, false, false},
		{"pem two with text", write("two.pem", append(append([]byte("Bundle\n"), full...), pemOf("CERTIFICATE", ca2.cert.Raw)...)), 2, nil, false, false},
		{"der one", write("one.der", ca1.cert.Raw), 1, nil, false, false},
		{"der two", write("two.der", append(slices.Clone(ca1.cert.Raw), ca2.cert.Raw...)), 2, nil, false, false},
		{"missing", filepath.Join(dir, "nope.pem"), 0, fs.ErrNotExist, true, false},
		{"directory", dir, 0, nil, true, true},
		{"empty", write("empty.pem", nil), 0, ErrNoCertificate, false, false},
		{"garbage", write("garbage.pem", []byte("hello, world\n")), 0, ErrNoCertificate, false, false},
		{"truncated pem", write("trunc.pem", full[:len(full)/2]), 0, ErrNoCertificate, false, false},
		{"key block", write("key.pem", append(slices.Clone(full), pemOf("PRIVATE KEY", keyDER)...)), 0, ErrUnexpectedPEM, false, false},
		{"crl block", write("crl.pem", append(slices.Clone(full), pemOf("X509 CRL", ca1.freshCRL(t))...)), 0, ErrUnexpectedPEM, false, false},
		{"bad cert in pem", write("bad.pem", pemOf("CERTIFICATE", []byte{0x30, 0x03, 1, 2, 3})), 0, nil, false, true},
		{"non-CA", write("leaf.pem", pemOf("CERTIFICATE", leaf.cert.Raw)), 0, ErrNotCA, false, false},
		{"non-CA after CA", write("mixed.der", append(slices.Clone(ca1.cert.Raw), leaf.cert.Raw...)), 0, ErrNotCA, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := LoadCAFile(tt.path)
			if tt.n > 0 {
				if err != nil || len(certs) != tt.n {
					t.Fatalf("got %d certs, %v; want %d", len(certs), err, tt.n)
				}
				return
			}
			var cfe *CAFileError
			if !errors.As(err, &cfe) || cfe.Path != tt.path {
				t.Fatalf("want *CAFileError for %s, got %T %v", tt.path, err, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
			var pe *fs.PathError
			if tt.aspe != errors.As(err, &pe) {
				t.Fatalf("*fs.PathError = %v, want %v (%v)", !tt.aspe, tt.aspe, err)
			}
			// New reports the same typed error.
			if _, err := New(Default, []string{write("ok.pem", full), tt.path}, ""); !errors.As(err, &cfe) || cfe.Path != tt.path {
				t.Fatalf("New: %v", err)
			}
		})
	}
}

func TestCheckSuite(t *testing.T) {
	def, err := New(Default, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := New(MSSante, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		p     *Policy
		suite uint16
		ok    bool
	}{
		{def, tls.TLS_AES_128_GCM_SHA256, true},
		{def, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, true},
		{ms, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, true},
		{ms, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true},
		{ms, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, false},
		{ms, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
		{ms, tls.TLS_AES_128_GCM_SHA256, false},
	}
	for _, tt := range tests {
		err := tt.p.CheckSuite(tt.suite)
		var ce *CipherError
		if tt.ok != (err == nil) || (!tt.ok && (!errors.As(err, &ce) || ce.Suite != tt.suite || !errors.Is(err, ErrCipherNotAllowed))) {
			t.Errorf("%s 0x%04X: %v", tt.p.Name, tt.suite, err)
		}
	}
}

func TestDecide(t *testing.T) {
	good := RevocationStatus{State: Good, Source: SourceOCSP}
	rev := RevocationStatus{State: Revoked, Source: SourceCRL}
	unk := RevocationStatus{State: Unknown, Source: SourceOCSP, Err: ErrStale}
	none := RevocationStatus{State: Unknown, Err: ErrNoRevocationSource}
	tests := []struct {
		name     string
		require  bool
		in       []RevocationStatus
		state    RevocationState
		kind     error
		depth    int
		wantFrom int // index of the status returned
	}{
		{"default good", false, []RevocationStatus{good, good}, Good, nil, 0, 0},
		{"default unknown leaf", false, []RevocationStatus{unk, good}, Unknown, nil, 0, 0},
		{"default no source", false, []RevocationStatus{none}, Unknown, nil, 0, 0},
		{"default revoked leaf", false, []RevocationStatus{rev, good}, Revoked, ErrRevoked, 0, 0},
		{"default revoked intermediate", false, []RevocationStatus{unk, rev}, Revoked, ErrRevoked, 1, 1},
		{"default empty", false, nil, Unknown, nil, 0, -1},
		{"mssante good", true, []RevocationStatus{good, good}, Good, nil, 0, 0},
		{"mssante unknown leaf", true, []RevocationStatus{unk, good}, Unknown, ErrRevocationUnavailable, 0, 0},
		{"mssante unknown intermediate", true, []RevocationStatus{good, none}, Unknown, ErrRevocationUnavailable, 1, 1},
		{"mssante revoked wins", true, []RevocationStatus{unk, rev}, Revoked, ErrRevoked, 1, 1},
		{"mssante empty", true, nil, Unknown, ErrRevocationUnavailable, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Name: "x", RequireRevocation: tt.require}
			s, err := p.Decide(tt.in)
			if s.State != tt.state {
				t.Fatalf("state %q, want %q", s.State, tt.state)
			}
			if tt.wantFrom >= 0 && s.Source != tt.in[tt.wantFrom].Source {
				t.Fatalf("status %+v, want from index %d", s, tt.wantFrom)
			}
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			var re *RevocationError
			if !errors.As(err, &re) || !errors.Is(err, tt.kind) || re.Depth != tt.depth {
				t.Fatalf("err %#v, want kind %v depth %d", err, tt.kind, tt.depth)
			}
		})
	}
}
