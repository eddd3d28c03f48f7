package bench

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestSoftHSM provisions tokens and checks them through the module itself (no token agent here): objects visible
// without login, a signature by the imported key that verifies with the certificate, and errors.
func TestSoftHSM(t *testing.T) {
	dir := t.TempDir()
	pki, err := NewPKI(dir, CAName)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := pki.Identity(AliceName, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSoftHSM(t, dir)
	if err := s.AddToken("alice", "1234", alice); err != nil {
		t.Fatal(err)
	}
	if err := s.AddToken("empty", "1234", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddToken("alice", "1234", nil); err == nil {
		t.Error("duplicate token label accepted")
	}
	if err := s.AddRawCertificate("alice", []byte{9}, []byte("not DER")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRawCertificate("nosuch", []byte{9}, []byte("x")); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("AddRawCertificate on a missing token: %v", err)
	}

	ctx := pkcs11.New(s.Module)
	if ctx == nil {
		t.Fatalf("cannot load %s", s.Module)
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ctx.Finalize() }()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]uint{}
	for _, sl := range slots {
		if ti, err := ctx.GetTokenInfo(sl); err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			labels[ti.Label] = sl
		}
	}
	slot, ok := labels["alice"]
	if !ok || len(labels) != 2 {
		t.Fatalf("tokens %v, want alice and empty", labels)
	}
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	find := func(class uint) [][]byte {
		t.Helper()
		if err := ctx.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}); err != nil {
			t.Fatal(err)
		}
		hs, _, err := ctx.FindObjects(sh, 10)
		if err != nil {
			t.Fatal(err)
		}
		_ = ctx.FindObjectsFinal(sh)
		var ids [][]byte
		for _, h := range hs {
			a, err := ctx.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			if err != nil && class == pkcs11.CKO_CERTIFICATE {
				t.Fatal(err)
			}
			if err == nil && class == pkcs11.CKO_CERTIFICATE && bytes.Equal(a[0].Value, SoftHSMKeyID(alice.Cert)) && !bytes.Equal(a[1].Value, alice.Cert.Raw) {
				t.Error("certificate value differs from the identity's DER")
			}
			a, err = ctx.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, a[0].Value)
		}
		return ids
	}
	wantID := SoftHSMKeyID(alice.Cert)
	if keys := find(pkcs11.CKO_PRIVATE_KEY); len(keys) != 1 || !bytes.Equal(keys[0], wantID) {
		t.Fatalf("private keys visible without login: %x, want one with id %x", keys, wantID)
	}
	if certs := find(pkcs11.CKO_CERTIFICATE); len(certs) != 2 {
		t.Fatalf("certificates: %x, want the identity's and the raw one", certs)
	}

	if err := ctx.Login(sh, pkcs11.CKU_USER, "1234"); err != nil {
		t.Fatal(err)
	}
	if err := ctx.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, wantID)}); err != nil {
		t.Fatal(err)
	}
	hs, _, err := ctx.FindObjects(sh, 1)
	_ = ctx.FindObjectsFinal(sh)
	if err != nil || len(hs) != 1 {
		t.Fatalf("find key: %v %v", hs, err)
	}
	if err := ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, hs[0]); err != nil {
		t.Fatal(err)
	}
	msg := []byte("bench")
	sig, err := ctx.Sign(sh, msg)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(msg)
	if err := rsa.VerifyPKCS1v15(alice.Cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, d[:], sig); err != nil {
		t.Fatalf("imported key does not match the certificate: %v", err)
	}
}
