package token

import (
	"crypto"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// digestInfoPrefix is the DER of DigestInfo (RFC 8017 §9.2, note 1) up to the digest, per hash.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// pkcs1Input returns the CKM_RSA_PKCS input for a digest: DigestInfo(hash, digest), or the digest itself for
// crypto.Hash(0) and crypto.MD5SHA1 (TLS 1.0/1.1), like rsa.SignPKCS1v15.
func pkcs1Input(h crypto.Hash, digest []byte) ([]byte, error) {
	if h == 0 || h == crypto.MD5SHA1 {
		if h == crypto.MD5SHA1 && len(digest) != h.Size() {
			return nil, fmt.Errorf("%w: digest length %d for %v", ErrBadInput, len(digest), h)
		}
		return append([]byte(nil), digest...), nil
	}
	prefix, ok := digestInfoPrefix[h]
	if !ok {
		return nil, fmt.Errorf("%w: unsupported hash %v for pkcs1v15", ErrBadInput, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("%w: digest length %d for %v", ErrBadInput, len(digest), h)
	}
	out := make([]byte, 0, len(prefix)+len(digest))
	return append(append(out, prefix...), digest...), nil
}

// ecdsaRawToASN1 converts a CKM_ECDSA signature (r || s, each half the length, PKCS#11 v2.40 §2.3.1) into the
// ASN.1 DER Ecdsa-Sig-Value SEQUENCE { r INTEGER, s INTEGER } of RFC 3279 §2.2.3 that crypto.Signer returns.
func ecdsaRawToASN1(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("ecdsa signature: odd or empty length %d", len(raw))
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, fmt.Errorf("ecdsa signature: zero r or s")
	}
	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}

// pssHash returns the CKM_ and CKG_MGF1_ constants for a hash in CK_RSA_PKCS_PSS_PARAMS.
func pssHash(h crypto.Hash) (mech, mgf uint, ok bool) {
	switch h {
	case crypto.SHA1:
		return pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, true
	case crypto.SHA224:
		return pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224, true
	case crypto.SHA256:
		return pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, true
	case crypto.SHA384:
		return pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384, true
	case crypto.SHA512:
		return pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512, true
	}
	return 0, 0, false
}
