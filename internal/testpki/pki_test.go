package testpki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPKIChains(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPKI(dir, "CardMail Test CA")
	if err != nil {
		t.Fatal(err)
	}
	if p.CA.Subject.CommonName != "CardMail Test CA" || !p.CA.IsCA {
		t.Fatalf("CA subject %v IsCA %v", p.CA.Subject, p.CA.IsCA)
	}
	if p.CA.SignatureAlgorithm != x509.SHA256WithRSA || p.CAKey.N.BitLen() != 2048 {
		t.Fatalf("CA algorithm %v, %d bits", p.CA.SignatureAlgorithm, p.CAKey.N.BitLen())
	}
	server, err := p.ServerCert("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := p.Identity("Dr Old Card", IdentityOptions{NotBefore: time.Now().AddDate(-2, 0, 0),
		NotAfter: time.Now().AddDate(-1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	noEKU, err := p.Identity("Dr Wrong Purpose", IdentityOptions{NoClientAuthEKU: true, Email: "wp@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := p.Identity(AliceName, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewPKI(t.TempDir(), "Other CA")
	if err != nil {
		t.Fatal(err)
	}

	client := x509.VerifyOptions{Roots: p.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	tests := []struct {
		name    string
		cert    *x509.Certificate
		opts    x509.VerifyOptions
		wantErr bool
	}{
		{"alice client auth", alice.Cert, client, false},
		{"alice against other CA", alice.Cert, x509.VerifyOptions{Roots: other.Pool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, true},
		{"expired", expired.Cert, client, true},
		{"no clientAuth EKU", noEKU.Cert, client, true},
		{"server localhost", server.Cert, x509.VerifyOptions{Roots: p.Pool(), DNSName: "localhost"}, false},
		{"server 127.0.0.1", server.Cert, x509.VerifyOptions{Roots: p.Pool(), DNSName: "127.0.0.1"}, false},
		{"server wrong host", server.Cert, x509.VerifyOptions{Roots: p.Pool(), DNSName: "mail.example"}, true},
		{"server cert as client", server.Cert, client, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cert.Verify(tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Verify: %v, wantErr %v", err, tt.wantErr)
			}
		})
	}

	if got := alice.Cert.EmailAddresses; len(got) != 1 || got[0] != "alice.martin@cardmail.test" {
		t.Errorf("alice email %v", got)
	}
	if got := noEKU.Cert.EmailAddresses; len(got) != 1 || got[0] != "wp@example.test" {
		t.Errorf("email option %v", got)
	}
	if alice.Cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 || alice.Cert.Subject.CommonName != AliceName {
		t.Errorf("alice key usage %v CN %q", alice.Cert.KeyUsage, alice.Cert.Subject.CommonName)
	}
	// Files are written and parse back to the same objects.
	for _, id := range []*Identity{alice, server} {
		cert, _, err := readCert(id.CertFile)
		if err != nil || !cert.Equal(id.Cert) {
			t.Errorf("%s: %v", id.CertFile, err)
		}
		key, _, err := readKey(id.KeyFile)
		if err != nil || !key.Equal(id.Key) {
			t.Errorf("%s: %v", id.KeyFile, err)
		}
	}
	if alice.CertFile != filepath.Join(dir, "dr-alice-martin.crt.pem") {
		t.Errorf("CertFile %s", alice.CertFile)
	}
	if st, err := os.Stat(alice.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", st.Mode(), err)
	}
}

func TestPKIRevoke(t *testing.T) {
	p1, err := NewPKI(t.TempDir(), CAName)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := p1.Identity(AliceName, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bruno, err := p1.Identity(BrunoName, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewPKI(t.TempDir(), "CRL CA") // a fresh PKI: Revoke is cumulative per PKI value
	if err != nil {
		t.Fatal(err)
	}
	parse := func(t *testing.T, pemBytes []byte) *x509.RevocationList {
		t.Helper()
		blk, _ := pem.Decode(pemBytes)
		if blk == nil || blk.Type != "X509 CRL" {
			t.Fatalf("not a CRL PEM: %q", pemBytes)
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(p2.CA); err != nil {
			t.Fatalf("CRL signature: %v", err)
		}
		return crl
	}
	empty, err := p2.Revoke()
	if err != nil {
		t.Fatal(err)
	}
	if crl := parse(t, empty); len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("empty CRL has %d entries", len(crl.RevokedCertificateEntries))
	}
	one, err := p2.Revoke(alice.Cert.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	two, err := p2.Revoke(bruno.Cert.SerialNumber, alice.Cert.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	crl1, crl2 := parse(t, one), parse(t, two)
	if len(crl1.RevokedCertificateEntries) != 1 || crl1.RevokedCertificateEntries[0].SerialNumber.Cmp(alice.Cert.SerialNumber) != 0 {
		t.Fatalf("first CRL entries %v", crl1.RevokedCertificateEntries)
	}
	if len(crl2.RevokedCertificateEntries) != 2 || crl2.Number.Cmp(crl1.Number) <= 0 {
		t.Fatalf("second CRL: %d entries, number %v after %v", len(crl2.RevokedCertificateEntries), crl2.Number,
			crl1.Number)
	}
	if onDisk, err := os.ReadFile(filepath.Join(p2.Dir, "crl.pem")); err != nil || string(onDisk) != string(two) {
		t.Fatalf("crl.pem not the last CRL: %v", err)
	}
	if _, err := p2.Revoke(nil); err == nil {
		t.Fatal("Revoke(nil) succeeded")
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	p1, err := LoadOrCreatePKI(dir, CAName)
	if err != nil {
		t.Fatal(err)
	}
	a1, err := p1.LoadOrCreateIdentity(AliceName, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := LoadOrCreatePKI(dir, "ignored when loading")
	if err != nil {
		t.Fatal(err)
	}
	if !p2.CA.Equal(p1.CA) || !p2.CAKey.Equal(p1.CAKey) {
		t.Fatal("second LoadOrCreatePKI made a new CA")
	}
	a2, err := p2.LoadOrCreateIdentity(AliceName, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !a2.Cert.Equal(a1.Cert) || !a2.Key.Equal(a1.Key) || string(a2.CertPEM) != string(a1.CertPEM) {
		t.Fatal("second LoadOrCreateIdentity made a new identity")
	}

	t.Run("identity from another CA", func(t *testing.T) {
		other, err := NewPKI(t.TempDir(), "Other")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Identity(AliceName, IdentityOptions{}); err != nil {
			t.Fatal(err)
		}
		foreign := &PKI{CA: other.CA, CAKey: other.CAKey, CAPEM: other.CAPEM, Dir: dir}
		if _, err := foreign.LoadOrCreateIdentity(AliceName, IdentityOptions{}); !errors.Is(err, ErrNotIssuedByCA) {
			t.Fatalf("got %v, want ErrNotIssuedByCA", err)
		}
	})
	t.Run("corrupt CA file", func(t *testing.T) {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, "ca.pem"), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bad, "ca.key.pem"), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
		var fe *FileError
		if _, err := LoadOrCreatePKI(bad, CAName); !errors.As(err, &fe) || fe.Op != "parse" {
			t.Fatalf("got %v, want *FileError parse", err)
		}
	})
	t.Run("mismatched CA key", func(t *testing.T) {
		mixed := t.TempDir()
		other, err := NewPKI(t.TempDir(), "Other")
		if err != nil {
			t.Fatal(err)
		}
		caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
		keyPEM, _ := os.ReadFile(filepath.Join(other.Dir, "ca.key.pem"))
		_ = os.WriteFile(filepath.Join(mixed, "ca.pem"), caPEM, 0o644)
		_ = os.WriteFile(filepath.Join(mixed, "ca.key.pem"), keyPEM, 0o600)
		if _, err := LoadOrCreatePKI(mixed, CAName); err == nil {
			t.Fatal("mismatched CA key accepted")
		}
	})
}

func TestNames(t *testing.T) {
	tests := []struct{ name, base, email string }{
		{"Dr Alice Martin", "dr-alice-martin", "alice.martin@cardmail.test"},
		{"Dr. Bruno Petit", "dr.-bruno-petit", "bruno.petit@cardmail.test"},
		{"  Élodie  N'Guessan ", "lodie-n-guessan", "lodie.nguessan@cardmail.test"},
		{"localhost", "localhost", "localhost@cardmail.test"},
		{"127.0.0.1", "127.0.0.1", "127001@cardmail.test"},
		{"", "unnamed", "user@cardmail.test"},
		{"../../etc/passwd", "..-..-etc-passwd", "etcpasswd@cardmail.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FileBase(tt.name); got != tt.base {
				t.Errorf("FileBase %q, want %q", got, tt.base)
			}
			if got := DefaultEmail(tt.name); got != tt.email {
				t.Errorf("DefaultEmail %q, want %q", got, tt.email)
			}
		})
	}
}
