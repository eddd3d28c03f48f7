package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	_ "crypto/sha1"
	_ "crypto/sha512"
)

// TestDigestInfoPrefixes checks each prefix against crypto/rsa, which builds DigestInfo itself: a CKM_RSA_PKCS
// signature over prefix||digest must equal rsa.SignPKCS1v15 with the hash.
func TestDigestInfoPrefixes(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		t.Run(h.String(), func(t *testing.T) {
			d := h.New()
			d.Write([]byte("cardmail"))
			digest := d.Sum(nil)
			in, err := pkcs1Input(h, digest)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := rsa.SignPKCS1v15(nil, key, 0, in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rsa.SignPKCS1v15(nil, key, h, digest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, want) {
				t.Fatalf("signature over DigestInfo differs from crypto/rsa for %v", h)
			}
			// And the prefix really is DigestInfo { AlgorithmIdentifier, OCTET STRING digest }.
			var di struct {
				Alg struct {
					OID    asn1.ObjectIdentifier
					Params asn1.RawValue
				}
				Digest []byte
			}
			if rest, err := asn1.Unmarshal(in, &di); err != nil || len(rest) != 0 || !bytes.Equal(di.Digest, digest) {
				t.Fatalf("DigestInfo does not parse: %v rest %d", err, len(rest))
			}
		})
	}
}

func TestPKCS1InputErrors(t *testing.T) {
	tests := []struct {
		name   string
		h      crypto.Hash
		digest []byte
		ok     bool
	}{
		{"raw", 0, []byte("anything"), true},
		{"md5sha1", crypto.MD5SHA1, make([]byte, 36), true},
		{"md5sha1 short", crypto.MD5SHA1, make([]byte, 35), false},
		{"sha256 short", crypto.SHA256, make([]byte, 31), false},
		{"unsupported hash", crypto.SHA3_256, make([]byte, 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pkcs1Input(tt.h, tt.digest)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadInput)) {
				t.Fatalf("err = %v, want ok %t", err, tt.ok)
			}
		})
	}
}

func TestSignInput(t *testing.T) {
	d32 := make([]byte, 32)
	tests := []struct {
		name string
		s    Scheme
		d    []byte
		mech uint
		ok   bool
	}{
		{"pkcs1", Scheme{Kind: PKCS1v15, Hash: crypto.SHA256}, d32, 0x1, true},
		{"pss", Scheme{Kind: PSS, Hash: crypto.SHA256}, d32, 0xd, true},
		{"pss bad length", Scheme{Kind: PSS, Hash: crypto.SHA384}, d32, 0, false},
		{"pss bad hash", Scheme{Kind: PSS, Hash: crypto.MD5}, make([]byte, 16), 0, false},
		{"ecdsa", Scheme{Kind: ECDSA, Hash: crypto.SHA256}, d32, 0x1041, true},
		{"ecdsa empty", Scheme{Kind: ECDSA}, nil, 0, false},
		{"unknown kind", Scheme{Kind: 99}, d32, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, err := signInput(tt.s, tt.d)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadInput)) {
				t.Fatalf("err = %v, want ok %t", err, tt.ok)
			}
			if err == nil && m.Mechanism != tt.mech {
				t.Fatalf("mechanism = %#x, want %#x", m.Mechanism, tt.mech)
			}
		})
	}
}

func TestECDSARawToASN1(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			key, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			digest := bytes.Repeat([]byte{7}, 32)
			for i := 0; i < 20; i++ { // different r, s sizes (leading zero bytes)
				r, s, err := ecdsa.Sign(rand.Reader, key, digest)
				if err != nil {
					t.Fatal(err)
				}
				n := (curve.Params().BitSize + 7) / 8
				raw := make([]byte, 2*n)
				r.FillBytes(raw[:n])
				s.FillBytes(raw[n:])
				der, err := ecdsaRawToASN1(raw)
				if err != nil {
					t.Fatal(err)
				}
				if !ecdsa.VerifyASN1(&key.PublicKey, digest, der) {
					t.Fatalf("converted signature does not verify")
				}
			}
		})
	}
	for _, bad := range [][]byte{nil, {1}, {1, 2, 3}, make([]byte, 64)} {
		if _, err := ecdsaRawToASN1(bad); err == nil {
			t.Errorf("ecdsaRawToASN1(%x) accepted", bad)
		}
	}
	// r with the high bit set gets a leading zero in DER.
	raw := append(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0x01}, 32)...)
	der, err := ecdsaRawToASN1(raw)
	if err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil || sig.R.Sign() <= 0 || sig.R.Cmp(new(big.Int).SetBytes(raw[:32])) != 0 {
		t.Fatalf("round trip: %v %v", err, sig.R)
	}
}
