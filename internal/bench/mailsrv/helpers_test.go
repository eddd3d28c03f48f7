package mailsrv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"

	"github.com/cardmail/cardmail/internal/bench"
)

// testPKI is a PKI with Alice and Bruno for tests that need no card (the keys are in memory).
func testPKI(t testing.TB) (*bench.PKI, *bench.Identity) {
	t.Helper()
	pki, err := bench.NewPKI(t.TempDir(), bench.CAName)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := pki.Identity(bench.AliceName, bench.IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pki, alice
}

// keyTLS is a client tls.Config that trusts caFile and presents id (nil: no certificate).
func keyTLS(t testing.TB, caFile string, id *bench.Identity) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if id != nil {
		c, err := tls.X509KeyPair(id.CertPEM, id.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
