package bench

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

// SoftHSM is a SoftHSM2 installation private to one test: its own configuration file and token directory.
// Tokens are provisioned through the PKCS#11 module itself.
//
// miekg/pkcs11 rather than crypto11 here: crypto11 can generate keys but not import an existing RSA private key
// (the bench's identities must be the same keys the PKI issued), its ImportCertificate takes a parsed
// *x509.Certificate so it cannot plant a malformed certificate object, and its Configure needs the token to exist
// already. Each method loads the module, does its work and finalizes it, so no PKCS#11 state stays in the test
// process while agents (child processes) read the tokens.
//
// The methods are safe for concurrent use. Provision tokens before starting clients: a SoftHSM2 instance that is
// already initialised in another process may not see tokens created afterwards.
type SoftHSM struct {
	Module string // path of libsofthsm2.so
	Conf   string // path of the softhsm2.conf written by NewSoftHSM (also in SOFTHSM2_CONF)
	Dir    string // token directory

	mu   sync.Mutex
	pins map[string]string // token label -> user PIN, to log in when importing objects
}

// softHSMModules are where Debian, Fedora and Homebrew install the SoftHSM2 module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// softHSMSOPIN is the security officer PIN of every bench token.
const softHSMSOPIN = "87654321"

// NewSoftHSM writes a softhsm2.conf with its token directory under dir, points SOFTHSM2_CONF at it for the whole
// process with t.Setenv (so child processes such as token agents inherit it; t must therefore not be parallel),
// and checks that softhsm2-util and the module are installed, failing t with an install hint otherwise. No token
// exists until AddToken.
func NewSoftHSM(t testing.TB, dir string) *SoftHSM {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Fatalf("bench: softhsm2-util not found (%v): install the softhsm2 package (apt-get install softhsm2)", err)
	}
	var module string
	for _, p := range softHSMModules {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			module = p
			break
		}
	}
	if module == "" {
		t.Fatalf("bench: libsofthsm2.so not found in %v: install the softhsm2 package (apt-get install softhsm2)", softHSMModules)
	}
	tokDir := filepath.Join(dir, "softhsm-tokens")
	if err := os.MkdirAll(tokDir, 0o700); err != nil {
		t.Fatalf("bench: %v", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokDir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("bench: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command("softhsm2-util", "--show-slots").CombinedOutput(); err != nil {
		t.Fatalf("bench: softhsm2-util --show-slots: %v\n%s", err, out)
	}
	return &SoftHSM{Module: module, Conf: conf, Dir: tokDir, pins: map[string]string{}}
}

// AddToken initialises a new token with the label and user PIN (softhsm2-util --init-token --free; the PINs of
// these throwaway test tokens are test data, which is why they may appear on a command line) and, when id is not
// nil, imports its RSA private key (CKA_PRIVATE false, so it is listed without login as on cards; CKA_SIGN true)
// and its certificate under the same CKA_ID (the certificate's SubjectKeyId, or the SHA-1 of the modulus).
func (s *SoftHSM) AddToken(label, pin string, id *Identity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.pins[label]; dup {
		return fmt.Errorf("bench: softhsm: token %q already exists", label)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", softHSMSOPIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: softhsm2-util --init-token %q: %w: %s", label, err, bytes.TrimSpace(out))
	}
	s.pins[label] = pin
	if id == nil {
		return nil
	}
	if id.Key == nil || id.Cert == nil {
		return fmt.Errorf("bench: softhsm: identity %q has no key or certificate", id.Name)
	}
	ckaID := SoftHSMKeyID(id.Cert)
	k := id.Key
	k.Precompute()
	if len(k.Primes) != 2 {
		return fmt.Errorf("bench: softhsm: identity %q: multi-prime RSA key", id.Name)
	}
	key := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, id.Name),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, id.Cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(k.E)).Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, k.D.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, k.Primes[0].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, k.Primes[1].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, k.Precomputed.Dp.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, k.Precomputed.Dq.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, k.Precomputed.Qinv.Bytes()),
	}
	return s.withToken(label, func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		if _, err := ctx.CreateObject(sh, key); err != nil {
			return fmt.Errorf("create private key: %w", err)
		}
		return createCert(ctx, sh, ckaID, id.Name, id.Cert.Raw, id.Cert.RawSubject, id.Cert.RawIssuer, id.Cert.SerialNumber)
	})
}

// SoftHSMKeyID is the CKA_ID AddToken gives an identity's key and certificate: the certificate's SubjectKeyId,
// or 20 bytes derived from its serial number when it has none.
func SoftHSMKeyID(c *x509.Certificate) []byte {
	if len(c.SubjectKeyId) > 0 {
		return append([]byte(nil), c.SubjectKeyId...)
	}
	b := c.SerialNumber.Bytes()
	out := make([]byte, 20)
	copy(out[max(0, 20-len(b)):], b)
	return out
}

// AddRawCertificate plants a certificate object with CKA_VALUE der (which need not parse) and CKA_ID id in the
// token labelled label (created by AddToken). The object's CKA_LABEL is "raw".
func (s *SoftHSM) AddRawCertificate(label string, id []byte, der []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withToken(label, func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		emptyName := []byte{0x30, 0x00} // an empty DER Name: CKA_SUBJECT is required for X.509 certificates
		return createCert(ctx, sh, id, "raw", der, emptyName, emptyName, nil)
	})
}

func createCert(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, id []byte, label string, der, subject, issuer []byte, serial *big.Int) error {
	attrs := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, subject),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, issuer),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, der),
	}
	if serial != nil {
		// CKA_SERIAL_NUMBER is the DER INTEGER, as in the certificate.
		sb := serial.Bytes()
		if len(sb) == 0 || sb[0]&0x80 != 0 {
			sb = append([]byte{0}, sb...)
		}
		attrs = append(attrs, pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, append([]byte{0x02, byte(len(sb))}, sb...)))
	}
	if _, err := ctx.CreateObject(sh, attrs); err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	return nil
}

// withToken loads the module, logs in as user on the token labelled label in a read/write session, runs f and
// tears everything down. s.mu must be held.
func (s *SoftHSM) withToken(label string, f func(*pkcs11.Ctx, pkcs11.SessionHandle) error) (err error) {
	pin, ok := s.pins[label]
	if !ok {
		return fmt.Errorf("bench: softhsm: no token %q (call AddToken first)", label)
	}
	wrap := func(e error) error {
		if e == nil {
			return nil
		}
		return fmt.Errorf("bench: softhsm token %q: %w", label, e)
	}
	ctx := pkcs11.New(s.Module)
	if ctx == nil {
		return wrap(errors.New("cannot load " + s.Module))
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		return wrap(fmt.Errorf("C_Initialize: %w", err))
	}
	defer func() {
		if e := ctx.Finalize(); e != nil && err == nil {
			err = wrap(fmt.Errorf("C_Finalize: %w", e))
		}
	}()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return wrap(fmt.Errorf("C_GetSlotList: %w", err))
	}
	for _, slot := range slots {
		ti, err := ctx.GetTokenInfo(slot)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 || ti.Label != label {
			continue
		}
		sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return wrap(fmt.Errorf("C_OpenSession: %w", err))
		}
		defer func() { _ = ctx.CloseSession(sh) }()
		if err := ctx.Login(sh, pkcs11.CKU_USER, pin); err != nil {
			return wrap(fmt.Errorf("C_Login: %w", err))
		}
		defer func() { _ = ctx.Logout(sh) }()
		return wrap(f(ctx, sh))
	}
	return wrap(errors.New("token not found in any slot"))
}
