package tlspolicy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"testing"
	"testing/fstest"
)

// withBundledRoot replaces the bundled roots by ca for the test (the real IGC-Santé root's key is not ours to sign
// test servers with).
func withBundledRoot(t *testing.T, ca *testCA) {
	old := bundledRoots
	bundledRoots = fstest.MapFS{"roots/test-igc.pem": {Data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})}}
	t.Cleanup(func() { bundledRoots = old })
}

// TestTrustAnchors runs real TLS handshakes on 127.0.0.1 against servers whose chains end at a system root, at the
// bundled IGC-Santé root, and at a root from a CA file: mssante trusts the bundled roots and the CA files it is
// given, never the system roots; default trusts the system roots and its CA files, never the bundled roots; the
// facts say which anchor a verified chain ended at.
func TestTrustAnchors(t *testing.T) {
	igc := newRootCA(t, "AC RACINE IGC-SANTE ELEMENTAIRE (test)")
	withBundledRoot(t, igc)
	crls := newHTTPServer(t)
	org := igc.issue(t, "AC IGC-SANTE ELEMENTAIRE ORGANISATIONS (test)", leafOpts{isCA: true, crl: []string{crls.set("/igc.crl", igc.freshCRL(t))}})
	igcLeaf := org.ca.issue(t, "mssante server", leafOpts{dns: []string{testHost}, crl: []string{crls.set("/org.crl", org.ca.freshCRL(t))}})
	sysLeaf := systemRoot.issue(t, "public server", leafOpts{dns: []string{testHost}, crl: []string{crls.set("/sys.crl", systemRoot.freshCRL(t))}})
	own := newRootCA(t, "Clinic IT Root")
	ownLeaf := own.issue(t, "clinic server", leafOpts{dns: []string{testHost}, crl: []string{crls.set("/own.crl", own.freshCRL(t))}})
	ownFile := own.file(t, t.TempDir())
	sysFile := systemRoot.file(t, t.TempDir())

	igcAddr := serve(t, igcLeaf.tlsCert(org.cert))
	sysAddr := serve(t, sysLeaf.tlsCert())
	ownAddr := serve(t, ownLeaf.tlsCert())

	policy := func(name Name, caFiles ...string) *Policy {
		p, err := New(name, caFiles, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	def, defOwn, defSys := policy(Default), policy(Default, ownFile), policy(Default, sysFile)
	ms, msOwn := policy(MSSante), policy(MSSante, ownFile)
	if ms.SystemRoots || !def.SystemRoots {
		t.Fatalf("SystemRoots: mssante %v, default %v", ms.SystemRoots, def.SystemRoots)
	}
	if a := msOwn.Anchors(); len(a) != 2 || a[0].Source != AnchorBundled || a[1].Source != AnchorCAFile || a[1].Path != ownFile {
		t.Fatalf("mssante anchors %+v", a)
	}

	tests := []struct {
		name   string
		p      *Policy
		addr   string
		source AnchorSource // "" = untrusted
		path   string
		root   *testCA
	}{
		{"default trusts a system root", def, sysAddr, AnchorSystem, "", systemRoot},
		{"default does not trust IGC-Santé", def, igcAddr, "", "", nil},
		{"default trusts its CA file", defOwn, ownAddr, AnchorCAFile, ownFile, own},
		{"a CA file wins over the same system root", defSys, sysAddr, AnchorCAFile, sysFile, systemRoot},
		{"mssante trusts the bundled IGC-Santé root", ms, igcAddr, AnchorBundled, "roots/test-igc.pem", igc},
		{"mssante does not trust a system root", ms, sysAddr, "", "", nil},
		{"mssante does not trust an unnamed CA", ms, ownAddr, "", "", nil},
		{"mssante trusts a CA file the profile names", msOwn, ownAddr, AnchorCAFile, ownFile, own},
		{"mssante with a CA file still refuses a system root", msOwn, sysAddr, "", "", nil},
		{"mssante with a CA file still trusts IGC-Santé", msOwn, igcAddr, AnchorBundled, "roots/test-igc.pem", igc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := &Facts{}
			err := dial(t, tt.p, tt.addr, facts)
			f := facts.Snapshot()
			if tt.source == "" {
				var cve *tls.CertificateVerificationError
				var ua x509.UnknownAuthorityError
				if !errors.As(err, &cve) || !errors.As(err, &ua) || f.Verified {
					t.Fatalf("err %T %v (verified %v), want an unknown authority", err, err, f.Verified)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if f.Anchor.Source != tt.source || f.Anchor.Path != tt.path || f.Anchor.Cert == nil || !f.Anchor.Cert.Equal(tt.root.cert) {
				t.Fatalf("anchor %+v, want %s %q", f.Anchor, tt.source, tt.path)
			}
			if tt.p.RequireRevocation && (f.Revocation.State != Good || len(f.ChainRevocation) != len(f.ServerChain)-1) {
				t.Fatalf("revocation %+v over %d certificates", f.ChainRevocation, len(f.ServerChain))
			}
		})
	}
}

// TestBundledRootsShipped checks the IGC-Santé roots CardMail ships: exactly the expected certificates (by SHA-256
// of the DER), self-signed CA roots valid until their published end, and only in the mssante policy.
func TestBundledRootsShipped(t *testing.T) {
	want := map[string]string{
		// AC RACINE IGC-SANTE ELEMENTAIRE (ASIP-SANTE), 2013-06-25 to 2033-06-25.
		"2d9e22ca19f777c6b745257c723ecb8df3c35fa6f1f6ec36b83600c97346967f": "AC RACINE IGC-SANTE ELEMENTAIRE",
	}
	roots, err := BundledRoots()
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != len(want) {
		t.Fatalf("%d bundled roots, want %d", len(roots), len(want))
	}
	for _, c := range roots {
		fp := fingerprint(c)
		cn, ok := want[fp]
		if !ok || c.Subject.CommonName != cn || c.Subject.String() != c.Issuer.String() {
			t.Fatalf("unexpected bundled root %s (%s, issuer %s)", fp, c.Subject, c.Issuer)
		}
		if err := c.CheckSignatureFrom(c); err != nil || !c.IsCA || c.NotAfter.Year() != 2033 {
			t.Fatalf("%s: self-signature %v, CA %v, not after %s", cn, err, c.IsCA, c.NotAfter)
		}
		if len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "ASIP-SANTE" {
			t.Fatalf("%s: organisation %v", cn, c.Subject.Organization)
		}
	}
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
