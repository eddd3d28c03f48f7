package tlspolicy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The test PKI: ECDSA P-256 CAs and OCSP signers (fast), one RSA-2048 key shared by server certificates (the
// mssante suites are ECDHE-RSA).

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

func serverKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return rsaKey
}

type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	parent *testCA
	serial int64
	mu     sync.Mutex
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRootCA makes a self-signed root.
func newRootCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := ecKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"CardMail test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key}
}

type leafOpts struct {
	dns       []string
	notBefore time.Time
	notAfter  time.Time
	ocsp      []string
	crl       []string
	isCA      bool
	ocspSign  bool // id-kp-OCSPSigning responder certificate
	ec        bool // ECDSA key instead of the shared RSA key
}

type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
	ca   *testCA // for intermediates
}

func (ca *testCA) issue(t testing.TB, name string, o leafOpts) issued {
	t.Helper()
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(12 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"CardMail test"}},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		DNSNames:              o.dns,
		OCSPServer:            o.ocsp,
		CRLDistributionPoints: o.crl,
		BasicConstraintsValid: true,
		IsCA:                  o.isCA,
	}
	var key crypto.Signer
	switch {
	case o.isCA:
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		key = ecKey(t)
	case o.ocspSign:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		key = ecKey(t)
	case o.ec:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		key = ecKey(t)
	default:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		key = serverKey(t)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	out := issued{cert: c, key: key}
	if o.isCA {
		out.ca = &testCA{cert: c, key: key, parent: ca}
	}
	return out
}

// tlsCert is the server's tls.Certificate: leaf + intermediates up to (not including) the root.
func (i issued) tlsCert(chain ...*x509.Certificate) tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{i.cert.Raw}, PrivateKey: i.key, Leaf: i.cert}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// crl returns a DER CRL of ca revoking serials, valid from thisUpdate to nextUpdate.
func (ca *testCA) crl(t testing.TB, thisUpdate, nextUpdate time.Time, serials ...*big.Int) []byte {
	t.Helper()
	ca.mu.Lock()
	ca.serial++
	n := ca.serial
	ca.mu.Unlock()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-30 * time.Minute), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(n),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// freshCRL is valid from an hour ago to an hour from now.
func (ca *testCA) freshCRL(t testing.TB, serials ...*big.Int) []byte {
	return ca.crl(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), serials...)
}

func writePEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeKey(t testing.TB, path string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, path, "PRIVATE KEY", der)
}

// caFile writes the CA's certificate as PEM into dir and returns its path.
func (ca *testCA) file(t testing.TB, dir string) string {
	return writePEM(t, filepath.Join(dir, ca.cert.Subject.CommonName+".pem"), "CERTIFICATE", ca.cert.Raw)
}
