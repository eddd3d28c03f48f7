package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"time"
)

// TokenInfo is the part of CK_TOKEN_INFO the application uses. Strings are trimmed of PKCS#11 space padding.
type TokenInfo struct {
	Label, Serial, Manufacturer, Model string

	LoginRequired      bool // CKF_LOGIN_REQUIRED
	ProtectedAuthPath  bool // CKF_PROTECTED_AUTHENTICATION_PATH: PIN pad, call Login with a nil PIN
	UserPINCountLow    bool // CKF_USER_PIN_COUNT_LOW
	UserPINFinalTry    bool // CKF_USER_PIN_FINAL_TRY
	UserPINLocked      bool // CKF_USER_PIN_LOCKED
	UserPINToBeChanged bool // CKF_USER_PIN_TO_BE_CHANGED
}

// Slot is a PKCS#11 slot with a recognised, initialised token present. For OpenSC, Description is the PC/SC
// reader name.
type Slot struct {
	ID          uint
	Description string
	Token       TokenInfo
}

// Mechanisms says which signature mechanisms a token offers (with CKF_SIGN).
type Mechanisms struct {
	RSAPKCS bool // CKM_RSA_PKCS
	RSAPSS  bool // CKM_RSA_PKCS_PSS
	ECDSA   bool // CKM_ECDSA
}

// SchemeKind is a signature scheme.
type SchemeKind int

const (
	PKCS1v15 SchemeKind = iota + 1 // RSASSA-PKCS1-v1_5 (RFC 8017 §8.2), CKM_RSA_PKCS over DigestInfo
	PSS                            // RSASSA-PSS (RFC 8017 §8.1), CKM_RSA_PKCS_PSS, MGF1 with the same hash
	ECDSA                          // CKM_ECDSA, result converted to ASN.1 DER (RFC 3279 §2.2.3)
)

func (k SchemeKind) String() string {
	switch k {
	case PKCS1v15:
		return "pkcs1v15"
	case PSS:
		return "pss"
	case ECDSA:
		return "ecdsa"
	}
	return "unknown"
}

// Scheme describes a signature over a precomputed digest. Hash is the digest's hash (crypto.Hash(0) or
// crypto.MD5SHA1 with PKCS1v15 sign the raw bytes without DigestInfo, as crypto/rsa does). For PSS, SaltLength > 0
// is used as is; 0 or rsa.PSSSaltLengthEqualsHash (-1) mean the hash length (what TLS 1.3 requires).
type Scheme struct {
	Kind       SchemeKind
	Hash       crypto.Hash
	SaltLength int
}

// Reason is why a certificate is not usable for client authentication.
type Reason string

const (
	ReasonExpired            Reason = "expired"
	ReasonNotYetValid        Reason = "not-yet-valid"
	ReasonNoPrivateKey       Reason = "no-private-key"
	ReasonNoDigitalSignature Reason = "no-digital-signature"
	ReasonNoClientAuth       Reason = "no-client-auth"
	ReasonCACertificate      Reason = "ca-certificate"
	ReasonUnsupportedKey     Reason = "unsupported-key"
	ReasonMalformed          Reason = "malformed"
)

// Verdict says whether a certificate can be used to authenticate, and if not, every reason why.
type Verdict struct {
	Usable  bool
	Reasons []Reason
}

// Has reports whether r is among the verdict's reasons.
func (v Verdict) Has(r Reason) bool {
	for _, x := range v.Reasons {
		if x == r {
			return true
		}
	}
	return false
}

// Certificate is an X.509 certificate object on a token, listed without login, paired with the private key that
// has the same CKA_ID.
type Certificate struct {
	Slot          uint
	TokenLabel    string
	TokenSerial   string
	ID            []byte            // CKA_ID, shared by the certificate and its private key
	Label         string            // CKA_LABEL of the certificate object
	DER           []byte            // CKA_VALUE
	Cert          *x509.Certificate // nil when ParseErr != nil
	ParseErr      error
	HasPrivateKey bool
	// PrivateKeyInferred: the private key is hidden until login (CKA_PRIVATE, as on OpenSC cards) and
	// HasPrivateKey was inferred from a public key object with the same CKA_ID on a login-required token.
	PrivateKeyInferred bool
	KeyType            string // "RSA", "ECDSA", or "" when unknown or unsupported
	KeyBits            int
	SHA256             [32]byte // of DER
	Verdict            Verdict
}

// newCertificate builds a Certificate from a token object and evaluates it at now. It never panics on bad DER.
func newCertificate(slot uint, tokLabel, tokSerial string, id []byte, label string, der []byte, hasKey bool, now time.Time) Certificate {
	return newCertificateInferred(slot, tokLabel, tokSerial, id, label, der, hasKey, false, now)
}

func newCertificateInferred(slot uint, tokLabel, tokSerial string, id []byte, label string, der []byte, hasKey, inferred bool, now time.Time) Certificate {
	c := Certificate{
		Slot: slot, TokenLabel: tokLabel, TokenSerial: tokSerial, ID: id, Label: label, DER: der,
		HasPrivateKey: hasKey, PrivateKeyInferred: inferred, SHA256: sha256.Sum256(der),
	}
	c.Cert, c.ParseErr = x509.ParseCertificate(der)
	if c.ParseErr != nil {
		c.Cert = nil
	} else {
		c.KeyType, c.KeyBits = keyInfo(c.Cert.PublicKey)
	}
	c.Verdict = Evaluate(&c, now)
	return c
}

func keyInfo(pub any) (string, int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	}
	return "", 0
}

// Evaluate decides whether c can authenticate a TLS client at time now. It is a pure function of c and now:
// the key type comes from the parsed certificate, HasPrivateKey from c. A key usage extension without
// digitalSignature, or an extended key usage extension without clientAuth or anyExtendedKeyUsage, makes the
// certificate unusable. A nil c is malformed.
func Evaluate(c *Certificate, now time.Time) Verdict {
	var rs []Reason
	if c == nil {
		return Verdict{Reasons: []Reason{ReasonMalformed}}
	}
	if c.ParseErr != nil || c.Cert == nil {
		rs = append(rs, ReasonMalformed)
		if !c.HasPrivateKey {
			rs = append(rs, ReasonNoPrivateKey)
		}
		return Verdict{Reasons: rs}
	}
	x := c.Cert
	if now.Before(x.NotBefore) {
		rs = append(rs, ReasonNotYetValid)
	}
	if now.After(x.NotAfter) {
		rs = append(rs, ReasonExpired)
	}
	if !c.HasPrivateKey {
		rs = append(rs, ReasonNoPrivateKey)
	}
	if x.KeyUsage != 0 && x.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		rs = append(rs, ReasonNoDigitalSignature)
	}
	if len(x.ExtKeyUsage) > 0 || len(x.UnknownExtKeyUsage) > 0 {
		ok := false
		for _, u := range x.ExtKeyUsage {
			if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
				ok = true
			}
		}
		if !ok {
			rs = append(rs, ReasonNoClientAuth)
		}
	}
	if x.BasicConstraintsValid && x.IsCA {
		rs = append(rs, ReasonCACertificate)
	}
	if kt, _ := keyInfo(x.PublicKey); kt == "" {
		rs = append(rs, ReasonUnsupportedKey)
	}
	return Verdict{Usable: len(rs) == 0, Reasons: rs}
}

// Display helpers: data only, no words.

// CommonName is the subject CN, or "" for a malformed certificate.
func (c *Certificate) CommonName() string {
	if c.Cert == nil {
		return ""
	}
	return c.Cert.Subject.CommonName
}

// Email is the first rfc822Name SAN, or "".
func (c *Certificate) Email() string {
	if c.Cert == nil || len(c.Cert.EmailAddresses) == 0 {
		return ""
	}
	return c.Cert.EmailAddresses[0]
}

// IssuerCommonName is the issuer CN, or "".
func (c *Certificate) IssuerCommonName() string {
	if c.Cert == nil {
		return ""
	}
	return c.Cert.Issuer.CommonName
}

// NotAfter is the end of validity, or the zero time for a malformed certificate.
func (c *Certificate) NotAfter() time.Time {
	if c.Cert == nil {
		return time.Time{}
	}
	return c.Cert.NotAfter
}

// Fingerprint is the lowercase hex SHA-256 of the DER.
func (c *Certificate) Fingerprint() string { return hex.EncodeToString(c.SHA256[:]) }

// IDHex is CKA_ID in lowercase hex.
func (c *Certificate) IDHex() string { return hex.EncodeToString(c.ID) }
