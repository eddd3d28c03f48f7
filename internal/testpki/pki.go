// Package testpki generates the test and demo PKI: a CA that issues card identities (certificate, RSA key, PEM
// files) and server certificates, and revokes them in a CRL. It is used by the hardware-free bench, the stress tests
// and the demo; it never touches a real PKI and its keys are for tests and demonstrations only.
package testpki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Names of the two people of the bench and the demo, and of their CA.
const (
	AliceName = "Dr Alice Martin"
	BrunoName = "Dr Bruno Petit"
	CAName    = "CardMail Test CA"
)

// KeyBits is the size of every RSA key the PKI generates.
const KeyBits = 2048

// File names used in PKI.Dir.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca.key.pem"
	crlFile    = "crl.pem"
)

// PKI is a generated test CA that issues card identities and server certificates (RSA-2048, SHA-256).
// Its methods are safe for concurrent use; the exported fields must not be modified after NewPKI.
type PKI struct {
	CA    *x509.Certificate
	CAKey *rsa.PrivateKey
	CAPEM []byte // PEM of CA
	Dir   string // where files are written (ca.pem, ca.key.pem, <file>.crt.pem, <file>.key.pem, crl.pem)

	mu        sync.Mutex
	revoked   map[string]*big.Int // serial (decimal) -> serial
	crlNumber int64
}

// IdentityOptions tunes PKI.Identity. The zero value gives a certificate valid from one hour ago for one year,
// with the clientAuth extended key usage and an email address derived from the name.
type IdentityOptions struct {
	NotBefore, NotAfter time.Time // zero: now-1h, now+1y
	NoClientAuthEKU     bool      // true: emailProtection EKU only (a certificate a TLS server must refuse)
	Email               string    // "": derived from the name, e.g. "Dr Alice Martin" -> "alice.martin@cardmail.test"
}

// Identity is a certificate and its private key, in memory and as PEM files.
type Identity struct {
	Name              string
	Cert              *x509.Certificate
	Key               *rsa.PrivateKey
	CertPEM, KeyPEM   []byte // KeyPEM is PKCS#8 ("PRIVATE KEY")
	CertFile, KeyFile string
}

// FileError reports a PKI file that could not be read, parsed or written.
type FileError struct {
	Path string
	Op   string // "read", "parse", "write"
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("testpki: %s %s: %v", e.Op, e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// ErrNotIssuedByCA is returned (wrapped) by LoadOrCreatePKI/LoadOrCreateIdentity when a stored certificate does not
// belong to the stored CA.
var ErrNotIssuedByCA = errors.New("testpki: certificate not issued by this CA")

// NewPKI generates a CA whose subject CN is name, creates dir if needed and writes ca.pem and ca.key.pem there.
// Errors are *FileError for file problems, or wrapped crypto errors.
func NewPKI(dir string, name string) (*PKI, error) {
	return newPKI(dir, name, nil)
}

// newPKI is NewPKI with an optional pre-generated CA key.
// NewPKIWithKey is NewPKI with the CA key given (tests reuse keys: RSA generation is the slow part).
func NewPKIWithKey(dir, name string, key *rsa.PrivateKey) (*PKI, error) {
	return newPKI(dir, name, key)
}

func newPKI(dir, name string, key *rsa.PrivateKey) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &FileError{Path: dir, Op: "write", Err: err}
	}
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, KeyBits); err != nil {
			return nil, fmt.Errorf("testpki: generate CA key: %w", err)
		}
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"CardMail Test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parse CA certificate: %w", err)
	}
	p := &PKI{CA: cert, CAKey: key, CAPEM: certPEM(der), Dir: dir, revoked: map[string]*big.Int{}}
	keyPEM, err := privateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, caCertFile), p.CAPEM, 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadOrCreatePKI loads the CA from dir/ca.pem and dir/ca.key.pem when both exist, otherwise it calls NewPKI.
// A stored CA whose key does not match its certificate is an error (not silently replaced), so repeated runs
// present the same certificates or fail loudly.
func LoadOrCreatePKI(dir, name string) (*PKI, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	if errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist) {
		return NewPKI(dir, name)
	}
	cert, certBytes, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	key, _, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, &FileError{Path: keyPath, Op: "parse", Err: errors.New("CA key does not match ca.pem")}
	}
	return &PKI{CA: cert, CAKey: key, CAPEM: certBytes, Dir: dir, revoked: map[string]*big.Int{}}, nil
}

// Identity issues a card identity: CN=name, an email SAN, key usage digitalSignature (+keyEncipherment),
// extended key usage clientAuth and emailProtection (emailProtection only with opt.NoClientAuthEKU). The files are
// written to Dir as FileBase(name)+".crt.pem" and ".key.pem", replacing earlier ones.
func (p *PKI) Identity(name string, opt IdentityOptions) (*Identity, error) {
	return p.identity(name, opt, nil)
}

// identity is Identity with an optional pre-generated key.
// IdentityWithKey is Identity with the key given.
func (p *PKI) IdentityWithKey(name string, opt IdentityOptions, key *rsa.PrivateKey) (*Identity, error) {
	return p.identity(name, opt, key)
}

func (p *PKI) identity(name string, opt IdentityOptions, key *rsa.PrivateKey) (*Identity, error) {
	now := time.Now()
	nb, na := opt.NotBefore, opt.NotAfter
	if nb.IsZero() {
		nb = now.Add(-time.Hour)
	}
	if na.IsZero() {
		na = now.AddDate(1, 0, 0)
	}
	email := opt.Email
	if email == "" {
		email = DefaultEmail(name)
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
	if opt.NoClientAuthEKU {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	}
	tmpl := &x509.Certificate{
		Subject:        pkix.Name{CommonName: name, Organization: []string{"CardMail Test"}},
		NotBefore:      nb,
		NotAfter:       na,
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    eku,
		EmailAddresses: []string{email},
	}
	return p.issue(name, FileBase(name), tmpl, key)
}

// LoadOrCreateIdentity loads FileBase(name)+".crt.pem"/".key.pem" from Dir when both exist and the certificate was
// issued by this CA (opt is then ignored); otherwise it calls Identity. A stored pair that does not match (key vs
// certificate, or another CA) is an error wrapping ErrNotIssuedByCA or a *FileError.
func (p *PKI) LoadOrCreateIdentity(name string, opt IdentityOptions) (*Identity, error) {
	base := FileBase(name)
	certPath := filepath.Join(p.Dir, base+".crt.pem")
	keyPath := filepath.Join(p.Dir, base+".key.pem")
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	if errors.Is(errC, os.ErrNotExist) || errors.Is(errK, os.ErrNotExist) {
		return p.Identity(name, opt)
	}
	cert, certBytes, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	key, keyBytes, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, &FileError{Path: keyPath, Op: "parse", Err: errors.New("key does not match certificate")}
	}
	if err := cert.CheckSignatureFrom(p.CA); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotIssuedByCA, certPath, err)
	}
	return &Identity{Name: name, Cert: cert, Key: key, CertPEM: certBytes, KeyPEM: keyBytes,
		CertFile: certPath, KeyFile: keyPath}, nil
}

// ServerCert issues a serverAuth certificate valid for hosts (IP literals become IP SANs, the rest DNS SANs);
// with no hosts it is valid for "localhost" and 127.0.0.1. CN is the first host. Files are written as
// "server-"+FileBase(first host)+".crt.pem"/".key.pem".
func (p *PKI) ServerCert(hosts ...string) (*Identity, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"CardMail Test"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return p.issue(hosts[0], "server-"+FileBase(hosts[0]), tmpl, nil)
}

// Revoke adds serials to the CA's revocation list and returns a PEM CRL signed by the CA listing every serial
// revoked so far through this PKI value (Revoke() with no serials gives an empty, valid CRL). The CRL is valid from
// one minute ago for 7 days and is also written to Dir/crl.pem.
func (p *PKI) Revoke(serials ...*big.Int) (crlPEM []byte, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revoked == nil {
		p.revoked = map[string]*big.Int{}
	}
	for _, s := range serials {
		if s == nil {
			return nil, errors.New("testpki: revoke: nil serial")
		}
		p.revoked[s.String()] = new(big.Int).Set(s)
	}
	now := time.Now()
	var entries []x509.RevocationListEntry
	for _, s := range p.revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Minute)})
	}
	p.crlNumber++
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(p.crlNumber),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.AddDate(0, 0, 7),
		RevokedCertificateEntries: entries,
	}, p.CA, p.CAKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CRL: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	if err := writeFile(filepath.Join(p.Dir, crlFile), out, 0o644); err != nil {
		return nil, err
	}
	return out, nil
}

// Pool returns a new x509.CertPool holding only the CA.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	return pool
}

// DefaultEmail is the address Identity puts in the certificate when IdentityOptions.Email is empty: the name's
// words, lowercased, without a leading "Dr", joined by dots, at cardmail.test.
func DefaultEmail(name string) string {
	words := strings.Fields(strings.ToLower(name))
	if len(words) > 1 && (words[0] == "dr" || words[0] == "dr.") {
		words = words[1:]
	}
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte('.')
		}
		for _, r := range w {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
				b.WriteRune(r)
			}
		}
	}
	if b.Len() == 0 {
		b.WriteString("user")
	}
	return b.String() + "@cardmail.test"
}

// FileBase turns a name into the base of its file names: lowercase, runs of other characters than [a-z0-9.]
// replaced by "-" ("Dr Alice Martin" -> "dr-alice-martin").
func FileBase(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '.' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if s == "" {
		s = "unnamed"
	}
	return s
}

func (p *PKI) issue(name, base string, tmpl *x509.Certificate, key *rsa.PrivateKey) (*Identity, error) {
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, KeyBits); err != nil {
			return nil, fmt.Errorf("testpki: generate key for %q: %w", name, err)
		}
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.SubjectKeyId = keyID(&key.PublicKey)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.CAKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: create certificate for %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parse certificate for %q: %w", name, err)
	}
	keyPEM, err := privateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	id := &Identity{Name: name, Cert: cert, Key: key, CertPEM: certPEM(der), KeyPEM: keyPEM,
		CertFile: filepath.Join(p.Dir, base+".crt.pem"), KeyFile: filepath.Join(p.Dir, base+".key.pem")}
	if err := writeFile(id.CertFile, id.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(id.KeyFile, id.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return id, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testpki: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func keyID(pub *rsa.PublicKey) []byte {
	h := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return h[:20]
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func privateKeyPEM(key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testpki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return &FileError{Path: path, Op: "write", Err: err}
	}
	return nil
}

func readCert(path string) (*x509.Certificate, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, &FileError{Path: path, Op: "read", Err: err}
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, &FileError{Path: path, Op: "parse", Err: errors.New("no CERTIFICATE PEM block")}
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, &FileError{Path: path, Op: "parse", Err: err}
	}
	return cert, data, nil
}

func readKey(path string) (*rsa.PrivateKey, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, &FileError{Path: path, Op: "read", Err: err}
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, nil, &FileError{Path: path, Op: "parse", Err: errors.New("no PEM block")}
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		err = fmt.Errorf("unexpected PEM block %q", blk.Type)
	}
	if err != nil {
		return nil, nil, &FileError{Path: path, Op: "parse", Err: err}
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, &FileError{Path: path, Op: "parse", Err: fmt.Errorf("not an RSA key: %T", key)}
	}
	return rk, data, nil
}
