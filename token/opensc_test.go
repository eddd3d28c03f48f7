package token_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/token"
)

const cardPIN = "123456" // bench.CardOptions default

// openSCSlot starts a client on OpenSC and returns the slot of reader.
func openSCSlot(t *testing.T, b *bench.Bench, reader string) (*token.Client, token.Slot) {
	t.Helper()
	c := startClient(t, b.OpenSC, token.Options{})
	slots, err := c.Slots(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Description == reader {
			return c, s
		}
	}
	t.Fatalf("no slot for reader %q in %+v", reader, slots)
	return nil, token.Slot{}
}

// cardCert returns the card's certificate with the identity's DER.
func cardCert(t *testing.T, c *token.Client, slot token.Slot, id *bench.Identity) token.Certificate {
	t.Helper()
	certs, err := c.Certificates(testCtx(t), slot.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, cert := range certs {
		if bytes.Equal(cert.DER, id.Cert.Raw) {
			return cert
		}
	}
	t.Fatalf("certificate of %s not among %d listed", id.Name, len(certs))
	return token.Certificate{}
}

func TestOpenSCCard(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)
	c, slot := openSCSlot(t, b, b.Readers[0])
	ctx := testCtx(t)
	if !slot.Token.LoginRequired {
		t.Errorf("token info %+v: login not required", slot.Token)
	}
	cert := cardCert(t, c, slot, b.Alice)
	if !cert.HasPrivateKey || !cert.PrivateKeyInferred || !cert.Verdict.Usable || cert.KeyType != "RSA" || cert.KeyBits != 2048 || len(cert.ID) == 0 {
		t.Fatalf("card certificate: %+v", cert)
	}
	if n := b.Cards[0].Counters().Verify; n != 0 {
		t.Errorf("listing sent %d VERIFY with a PIN", n)
	}
	m, err := c.Mechanisms(ctx, slot.ID)
	if err != nil || !m.RSAPKCS || !m.RSAPSS {
		t.Errorf("mechanisms %+v, %v", m, err)
	}
	if err := c.Login(ctx, slot.ID, []byte(cardPIN)); err != nil {
		t.Fatal(err)
	}
	pub := b.Alice.Cert.PublicKey.(*rsa.PublicKey)
	d := sha256.Sum256([]byte("mail"))
	sig, err := c.Sign(ctx, slot.ID, cert.ID, d[:], token.Scheme{Kind: token.PSS, Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		t.Errorf("PSS signature: %v", err)
	}
	sig, err = c.Sign(ctx, slot.ID, cert.ID, d[:], token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
		t.Errorf("PKCS#1 v1.5 signature: %v", err)
	}
	if got := b.Cards[0].Counters(); got.Verify != 1 || got.Sign != 2 {
		t.Errorf("card counters %+v, want 1 verify and 2 signatures", got)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestOpenSCWrongPIN(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)
	c, slot := openSCSlot(t, b, b.Readers[0])
	ctx := testCtx(t)
	err := c.Login(ctx, slot.ID, []byte("000000"))
	var pe *token.PINError
	if !errors.As(err, &pe) || pe.Reason != token.PINIncorrect {
		t.Fatalf("wrong PIN: %v, want PINError incorrect", err)
	}
	if n := b.Cards[0].Counters().VerifyWrong; n != 1 {
		t.Fatalf("card saw %d wrong VERIFY, want exactly 1 (no retry)", n)
	}
	if left := b.Cards[0].TriesLeft(); left != 2 {
		t.Errorf("card tries left %d, want 2", left)
	}
	ti, err := c.TokenInfo(ctx, slot.ID)
	t.Logf("after one wrong PIN: %+v; flags %+v (%v)", pe, ti, err)
	if pe.TriesLeft == 0 || ti.UserPINLocked {
		t.Errorf("one wrong PIN reported as locked: %+v %+v", pe, ti)
	}
	if err := c.Login(ctx, slot.ID, []byte(cardPIN)); err != nil {
		t.Fatalf("right PIN after a wrong one: %v", err)
	}
	if got := b.Cards[0].Counters(); got.VerifyWrong != 1 || b.Cards[0].TriesLeft() != 3 {
		t.Errorf("after right PIN: counters %+v, tries %d", got, b.Cards[0].TriesLeft())
	}
}

// TestOpenSCCardPulledBeforeSign reproduces the OpenSC 0.23 deadlock window: the card leaves and a signature is
// requested before pcscd's next poll. The call must come back with a typed error (ErrTokenUnresponsive after the
// sign timeout, or a card-changed CKR code), and a new agent after reinsertion signs.
func TestOpenSCCardPulledBeforeSign(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)
	c, slot := openSCSlot(t, b, b.Readers[0])
	ctx := testCtx(t)
	cert := cardCert(t, c, slot, b.Alice)
	if err := c.Login(ctx, slot.ID, []byte(cardPIN)); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("before removal"))
	if err := b.Cards[0].Remove(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Sign(ctx, slot.ID, cert.ID, d[:], token.Scheme{Kind: token.PSS, Hash: crypto.SHA256})
	elapsed := time.Since(start)
	t.Logf("sign with the card just pulled: %v after %v", err, elapsed)
	if !errors.Is(err, token.ErrTokenUnresponsive) && !token.CardChanged(err) {
		t.Fatalf("sign after removal: %v, want ErrTokenUnresponsive or a card-changed CKR error", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("sign after removal took %v, want < 5s", elapsed)
	}
	c.Kill()
	<-c.Done()

	b.RemoveWait(t, 0)
	b.InsertWait(t, 0, 0)
	c2, slot2 := openSCSlot(t, b, b.Readers[0])
	cert2 := cardCert(t, c2, slot2, b.Alice)
	if err := c2.Login(ctx, slot2.ID, []byte(cardPIN)); err != nil {
		t.Fatal(err)
	}
	sig, err := c2.Sign(ctx, slot2.ID, cert2.ID, d[:], token.Scheme{Kind: token.PKCS1v15, Hash: crypto.SHA256})
	if err != nil {
		t.Fatalf("sign with a new agent after reinsertion: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(b.Alice.Cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, d[:], sig); err != nil {
		t.Error(err)
	}
}
