package virtualcard

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/testpki"
)

// testPKI is shared by the unit tests of this package: RSA key generation is the slow part.
var (
	testPKIOnce sync.Once
	testPKIVal  *testpki.PKI
	testAlice   *testpki.Identity
	testBruno   *testpki.Identity
	testPKIErr  error
)

func unitPKI(t testing.TB) (*testpki.PKI, *testpki.Identity, *testpki.Identity) {
	t.Helper()
	testPKIOnce.Do(func() {
		// The files go with the first caller's TempDir; the unit tests only use the PKI in memory.
		testPKIVal, testPKIErr = testpki.NewPKI(t.TempDir(), testpki.CAName)
		if testPKIErr != nil {
			return
		}
		testAlice, testPKIErr = testPKIVal.Identity(testpki.AliceName, testpki.IdentityOptions{})
		if testPKIErr != nil {
			return
		}
		testBruno, testPKIErr = testPKIVal.Identity(testpki.BrunoName, testpki.IdentityOptions{})
	})
	if testPKIErr != nil {
		t.Fatalf("unit PKI: %v", testPKIErr)
	}
	return testPKIVal, testAlice, testBruno
}

func h(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err) // test literal
	}
	return b
}

func swOf(resp []byte) int {
	if len(resp) < 2 {
		return -1
	}
	return int(resp[len(resp)-2])<<8 | int(resp[len(resp)-1])
}

// getAll sends cmd and follows 61xx with GET RESPONSE, returning the whole body and the final SW.
func getAll(t *testing.T, c *Card, cmd []byte) ([]byte, int) {
	t.Helper()
	resp := c.Transmit(cmd)
	var body []byte
	for i := 0; ; i++ {
		if i > 300 {
			t.Fatal("GET RESPONSE loop does not end")
		}
		body = append(body, resp[:len(resp)-2]...)
		sw := swOf(resp)
		if sw>>8 != 0x61 {
			return body, sw
		}
		le := byte(sw)
		resp = c.Transmit([]byte{0x00, 0xC0, 0x00, 0x00, le})
	}
}

var (
	selectPIV      = h("00A4040009A00000030800001000")
	selectPIVFull  = h("00A404000BA0000003080000100001" + "0000")
	getCHUID       = h("00CB3FFF055C035FC10200")
	getCert9A      = h("00CB3FFF055C035FC10500")
	verifyStatus   = h("00200080")
	pinRight       = h("0020008008313233343536FFFF")
	pinWrong       = h("0020008008393939393939FFFF")
	verifyUnverify = h("0020FF80")
)

func gaCommand(input []byte) []byte {
	dyn := tlv(0x7C, concat(tlv(0x82, nil), tlv(0x81, input)))
	// Extended length, as one APDU (the chained form is tested separately).
	cmd := []byte{0x00, 0x87, 0x07, 0x9A, 0x00, byte(len(dyn) >> 8), byte(len(dyn))}
	cmd = append(cmd, dyn...)
	return append(cmd, 0x00, 0x00)
}

// chained splits a command's data into short APDUs of at most 255 bytes with CLA 0x10 on all but the last.
func chained(ins, p1, p2 byte, data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := min(len(data), 255)
		cla := byte(0x10)
		if n == len(data) {
			cla = 0x00
		}
		apdu := append([]byte{cla, ins, p1, p2, byte(n)}, data[:n]...)
		if cla == 0 {
			apdu = append(apdu, 0x00)
		}
		out = append(out, apdu)
		data = data[n:]
	}
	return out
}

func pkcs1Block(t *testing.T, key *rsa.PrivateKey, digest []byte) []byte {
	t.Helper()
	prefix := h("3031300d060960864801650304020105000420") // DigestInfo SHA-256 (RFC 8017 9.2)
	t0 := append(prefix, digest...)
	k := key.Size()
	em := make([]byte, k)
	em[1] = 0x01
	for i := 2; i < k-len(t0)-1; i++ {
		em[i] = 0xFF
	}
	copy(em[k-len(t0):], t0)
	return em
}

func TestCardSelect(t *testing.T) {
	_, alice, _ := unitPKI(t)
	c := NewCard(alice, CardOptions{})
	tests := []struct {
		name string
		apdu []byte
		sw   int
		apt  bool
	}{
		{"truncated AID", selectPIV, 0x9000, true},
		{"full AID with version", selectPIVFull, 0x9000, true},
		{"RID only", h("00A4040005A000000308"), 0x9000, true},
		{"other AID", h("00A4040007A0000000031010"), 0x6A82, false},
		{"CAC AID", h("00A4040007A000000079010000"), 0x6A82, false},
		{"too short", h("00A4040002A000"), 0x6A82, false},
		{"select MF by FID", h("00A40000023F00"), 0x6A82, false},
		{"wrong length", h("00A4040009A000"), 0x6700, false},
		{"bad CLA", h("80A4040009A00000030800001000"), 0x6E00, false},
		{"unknown INS", h("00FD0000"), 0x6D00, false},
		{"too short APDU", h("00A4"), 0x6700, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := c.Transmit(tt.apdu)
			if got := swOf(resp); got != tt.sw {
				t.Fatalf("SW %04X, want %04X (resp %X)", got, tt.sw, resp)
			}
			if tt.apt {
				apt, ok := findTLV(resp[:len(resp)-2], 0x61)
				if !ok {
					t.Fatalf("no APT template in %X", resp)
				}
				if pix, _ := findTLV(apt, 0x4F); !bytes.Equal(pix, h("000010000100")) {
					t.Errorf("4F = %X", pix)
				}
				if alloc, _ := findTLV(apt, 0x79); !bytes.Equal(alloc, h("4F05A000000308")) {
					t.Errorf("79 = %X", alloc)
				}
			}
		})
	}
}

func TestCardGetData(t *testing.T) {
	_, alice, bruno := unitPKI(t)
	c := NewCard(alice, CardOptions{})
	c.Transmit(selectPIV)

	t.Run("CHUID", func(t *testing.T) {
		body, sw := getAll(t, c, getCHUID)
		if sw != 0x9000 {
			t.Fatalf("SW %04X", sw)
		}
		inner, ok := findTLV(body, 0x53)
		if !ok {
			t.Fatalf("no 53 in %X", body)
		}
		if f, _ := findTLV(inner, 0x30); len(f) != 25 {
			t.Errorf("FASC-N length %d", len(f))
		}
		guid, _ := findTLV(inner, 0x34)
		if len(guid) != 16 || !bytes.Equal(guid, c.GUID()) {
			t.Errorf("GUID %X, want %X", guid, c.GUID())
		}
		if other := NewCard(bruno, CardOptions{}).GUID(); bytes.Equal(other, guid) {
			t.Errorf("two cards share GUID %X", guid)
		}
	})
	t.Run("certificate via GET RESPONSE", func(t *testing.T) {
		first := c.Transmit(getCert9A)
		if sw := swOf(first); sw>>8 != 0x61 || len(first) != 258 {
			t.Fatalf("first chunk: %d bytes, SW %04X; want 256 bytes + 61xx", len(first), sw)
		}
		body, sw := getAll(t, c, getCert9A)
		if sw != 0x9000 {
			t.Fatalf("SW %04X", sw)
		}
		inner, _ := findTLV(body, 0x53)
		der, ok := findTLV(inner, 0x70)
		if !ok {
			t.Fatalf("no 70 in certificate object")
		}
		if info, _ := findTLV(inner, 0x71); !bytes.Equal(info, []byte{0}) {
			t.Errorf("CertInfo %X, want 00", info)
		}
		if _, ok := findTLV(inner, 0xFE); !ok {
			t.Errorf("no FE error detection code")
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if !cert.Equal(alice.Cert) {
			t.Error("card certificate differs from identity")
		}
	})
	t.Run("GET RESPONSE with short Le", func(t *testing.T) {
		c.Transmit(getCert9A)
		resp := c.Transmit(h("00C0000010"))
		if len(resp) != 0x12 || swOf(resp)>>8 != 0x61 {
			t.Fatalf("got %d bytes SW %04X", len(resp), swOf(resp))
		}
	})
	t.Run("GET RESPONSE without pending data", func(t *testing.T) {
		c.Transmit(selectPIV)
		if sw := swOf(c.Transmit(h("00C0000000"))); sw != 0x6985 {
			t.Fatalf("SW %04X", sw)
		}
	})
	t.Run("chained GET DATA", func(t *testing.T) {
		if sw := swOf(c.Transmit(h("10CB3FFF035C035F"))); sw != 0x9000 {
			t.Fatalf("first link SW %04X", sw)
		}
		// The first link carried 5C 03 5F; the last brings C1 02.
		body, sw := getAll(t, c, h("00CB3FFF02C10200"))
		if sw != 0x9000 || !bytes.Equal(body, c.chuid) {
			t.Fatalf("SW %04X body %X", sw, body)
		}
	})
	absent := []struct{ name, apdu string }{
		{"discovery 7E", "00CB3FFF035C017E00"},
		{"key history", "00CB3FFF055C035FC10C00"},
		{"CCC", "00CB3FFF055C035FC10700"},
		{"signature cert 9C", "00CB3FFF055C035FC10A00"},
		{"printed info", "00CB3FFF055C035FC10900"},
	}
	for _, tt := range absent {
		t.Run(tt.name, func(t *testing.T) {
			if sw := swOf(c.Transmit(h(tt.apdu))); sw != 0x6A82 {
				t.Fatalf("SW %04X, want 6A82", sw)
			}
		})
	}
	t.Run("bad P1P2", func(t *testing.T) {
		if sw := swOf(c.Transmit(h("00CB0000055C035FC10200"))); sw != 0x6A86 {
			t.Fatalf("SW %04X", sw)
		}
	})
	t.Run("no tag list", func(t *testing.T) {
		if sw := swOf(c.Transmit(h("00CB3FFF02010000"))); sw != 0x6A80 {
			t.Fatalf("SW %04X", sw)
		}
	})
}

func TestCardVerify(t *testing.T) {
	_, alice, _ := unitPKI(t)
	type step struct {
		apdu  []byte
		sw    int
		tries int
	}
	tests := []struct {
		name        string
		steps       []step
		verify      int
		verifyWrong int
	}{
		{"status then right PIN", []step{
			{verifyStatus, 0x63C3, 3}, {pinRight, 0x9000, 3}, {verifyStatus, 0x9000, 3},
		}, 1, 0},
		{"wrong PIN decrements, right PIN resets", []step{
			{pinWrong, 0x63C2, 2}, {verifyStatus, 0x63C2, 2}, {pinWrong, 0x63C1, 1}, {pinRight, 0x9000, 3},
		}, 3, 2},
		{"locked after three wrong", []step{
			{pinWrong, 0x63C2, 2}, {pinWrong, 0x63C1, 1}, {pinWrong, 0x63C0, 0},
			{verifyStatus, 0x6983, 0}, {pinRight, 0x6983, 0}, {pinWrong, 0x6983, 0},
		}, 5, 5},
		{"unverify with P1=FF", []step{
			{pinRight, 0x9000, 3}, {verifyUnverify, 0x9000, 3}, {verifyStatus, 0x63C3, 3},
		}, 1, 0},
		{"bad reference and length", []step{
			{h("0020008108313233343536FFFF"), 0x6A88, 3}, {h("002000800431323334"), 0x6A80, 3},
		}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCard(alice, CardOptions{})
			for i, s := range tt.steps {
				if sw := swOf(c.Transmit(bytes.Clone(s.apdu))); sw != s.sw {
					t.Fatalf("step %d: SW %04X, want %04X", i, sw, s.sw)
				}
				if got := c.TriesLeft(); got != s.tries {
					t.Fatalf("step %d: TriesLeft %d, want %d", i, got, s.tries)
				}
			}
			cnt := c.Counters()
			if cnt.Verify != tt.verify || cnt.VerifyWrong != tt.verifyWrong || cnt.APDUs != len(tt.steps) {
				t.Errorf("counters %+v, want Verify %d VerifyWrong %d APDUs %d", cnt, tt.verify, tt.verifyWrong,
					len(tt.steps))
			}
		})
	}
	t.Run("custom PIN and tries", func(t *testing.T) {
		c := NewCard(alice, CardOptions{PIN: "0000", Tries: 5})
		if sw := swOf(c.Transmit(verifyStatus)); sw != 0x63C5 {
			t.Fatalf("SW %04X", sw)
		}
		if sw := swOf(c.Transmit(h("002000800830303030FFFFFFFF"))); sw != 0x9000 {
			t.Fatalf("SW %04X", sw)
		}
	})
}

func TestCardGeneralAuthenticate(t *testing.T) {
	_, alice, _ := unitPKI(t)
	digest := sha256.Sum256([]byte("cardmail"))
	em := pkcs1Block(t, alice.Key, digest[:])

	c := NewCard(alice, CardOptions{})
	if sw := swOf(c.Transmit(gaCommand(em))); sw != 0x6982 {
		t.Fatalf("GA before VERIFY: SW %04X, want 6982", sw)
	}
	if c.Counters().Sign != 0 {
		t.Fatal("a refused GA counted as a signature")
	}
	c.Transmit(pinRight)

	check := func(t *testing.T, body []byte) {
		t.Helper()
		dyn, ok := findTLV(body, 0x7C)
		if !ok {
			t.Fatalf("no 7C in %X", body)
		}
		sig, ok := findTLV(dyn, 0x82)
		if !ok || len(sig) != 256 {
			t.Fatalf("bad 82 in %X", dyn)
		}
		if err := rsa.VerifyPKCS1v15(&alice.Key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("signature does not verify: %v", err)
		}
	}
	t.Run("extended APDU", func(t *testing.T) {
		body, sw := getAll(t, c, gaCommand(em))
		if sw != 0x9000 {
			t.Fatalf("SW %04X", sw)
		}
		check(t, body)
	})
	t.Run("chained short APDUs", func(t *testing.T) {
		links := chained(0x87, 0x07, 0x9A, tlv(0x7C, concat(tlv(0x82, nil), tlv(0x81, em))))
		for _, l := range links[:len(links)-1] {
			if sw := swOf(c.Transmit(l)); sw != 0x9000 {
				t.Fatalf("chain link SW %04X", sw)
			}
		}
		body, sw := getAll(t, c, links[len(links)-1])
		if sw != 0x9000 {
			t.Fatalf("SW %04X", sw)
		}
		check(t, body)
	})
	bad := []struct {
		name string
		apdu []byte
		sw   int
	}{
		{"wrong algorithm", append([]byte{0x00, 0x87, 0x11}, gaCommand(em)[3:]...), 0x6A86},
		{"wrong key", append([]byte{0x00, 0x87, 0x07, 0x9C}, gaCommand(em)[4:]...), 0x6A88},
		{"short input", gaCommand(em[:100]), 0x6A80},
		{"input above modulus", gaCommand(bytes.Repeat([]byte{0xFF}, 256)), 0x6A80},
		{"no 7C", h("0087079A03810100"), 0x6A80},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if sw := swOf(c.Transmit(tt.apdu)); sw != tt.sw {
				t.Fatalf("SW %04X, want %04X", sw, tt.sw)
			}
		})
	}
	if got := c.Counters().Sign; got != 2 {
		t.Errorf("Sign counter %d, want 2", got)
	}
	t.Run("power off resets security status", func(t *testing.T) {
		c.control(0x00, nil)
		if sw := swOf(c.Transmit(gaCommand(em))); sw != 0x6982 {
			t.Fatalf("SW %04X, want 6982", sw)
		}
	})
	t.Run("sign hook", func(t *testing.T) {
		c.Transmit(pinRight)
		called := 0
		c.SetSignHook(func() { called++ })
		getAll(t, c, gaCommand(em))
		c.SetSignHook(nil)
		getAll(t, c, gaCommand(em))
		if called != 1 {
			t.Fatalf("hook called %d times, want 1", called)
		}
	})
}

func TestCardControl(t *testing.T) {
	_, alice, _ := unitPKI(t)
	atr := h("3B8F8001")
	c := NewCard(alice, CardOptions{ATR: atr})
	if got := c.control(0x04, nil); !bytes.Equal(got, atr) {
		t.Fatalf("ATR %X", got)
	}
	if got := NewCard(alice, CardOptions{}).control(0x04, nil); !bytes.Equal(got, DefaultATR) {
		t.Fatalf("default ATR %X", got)
	}
	for _, b := range []byte{0x00, 0x01, 0x02, 0x09} {
		if got := c.control(b, nil); got != nil {
			t.Errorf("control %#x answered %X", b, got)
		}
	}
}

func TestParseAPDU(t *testing.T) {
	tests := []struct {
		apdu    string
		lc, ne  int
		wantErr bool
	}{
		{"00A40400", 0, 256, false},
		{"00C0000010", 0, 16, false},
		{"00C0000000", 0, 256, false},
		{"00A4040002A000", 2, 256, false},
		{"00A4040002A00010", 2, 16, false},
		{"00A4040002A0", 0, 0, true},
		{"00B0000000FFFF", 0, 65535, false},
		{"00B0000000000000", 0, 0, true}, // extended Lc=0 with 1 data byte is not valid
		{"0087079A000002AAAA", 2, 65536, false},
		{"0087079A000002AAAA0100", 2, 256, false},
		{"0087079A000002AAAA01", 0, 0, true},
		{"00", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.apdu, func(t *testing.T) {
			cmd, err := parseAPDU(h(tt.apdu))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (len(cmd.data) != tt.lc || cmd.ne != tt.ne) {
				t.Fatalf("Lc %d Ne %d, want %d %d", len(cmd.data), cmd.ne, tt.lc, tt.ne)
			}
		})
	}
}

func TestCardConcurrent(t *testing.T) {
	_, alice, _ := unitPKI(t)
	c := NewCard(alice, CardOptions{})
	c.Transmit(pinRight)
	digest := sha256.Sum256([]byte("x"))
	em := pkcs1Block(t, alice.Key, digest[:])
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				c.Transmit(gaCommand(em))
				c.Transmit(verifyStatus)
				_ = c.Counters()
				_ = c.TriesLeft()
			}
		}()
	}
	wg.Wait()
	if n := c.Counters().APDUs; n != 81 {
		t.Fatalf("APDUs %d, want 81", n)
	}
}

// FuzzCardAPDU feeds arbitrary command APDUs (and control bytes) to a card: it must never panic, and every answer to
// a command APDU must carry a status word.
func FuzzCardAPDU(f *testing.F) {
	seeds := [][]byte{selectPIV, selectPIVFull, getCHUID, getCert9A, verifyStatus, pinRight, pinWrong,
		h("10CB3FFF035C035F"), h("00C0000000"), h("0087079A000002AAAA0100"), h("0087079A047C028100"),
		h("00CB3FFF0A5C82FFFF"), h("7C"), {0x04}, {}}
	for _, s := range seeds {
		f.Add(s)
	}
	// One self-signed identity: each fuzz worker process builds it, so keep it to one key generation.
	key, err := rsa.GenerateKey(rand.Reader, testpki.KeyBits)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fuzz"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		f.Fatal(err)
	}
	alice := &testpki.Identity{Name: "Fuzz", Cert: cert, Key: key}
	f.Fuzz(func(t *testing.T, apdu []byte) {
		c := NewCard(alice, CardOptions{})
		c.Transmit(pinRight)
		if len(apdu) == 1 {
			c.control(apdu[0], nil)
			return
		}
		for i := 0; i < 3; i++ { // repeat to exercise chaining and pending responses
			if resp := c.Transmit(apdu); len(resp) < 2 {
				t.Fatalf("response without SW: %X", resp)
			}
		}
		if resp := c.Transmit(h("00C0000000")); len(resp) < 2 {
			t.Fatalf("GET RESPONSE without SW: %X", resp)
		}
	})
}

func ExampleNewCard() {
	dir, err := os.MkdirTemp("", "cardmail-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	pki, err := testpki.NewPKI(dir, testpki.CAName)
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := pki.Identity(testpki.AliceName, testpki.IdentityOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	card := NewCard(id, CardOptions{})
	resp := card.Transmit([]byte{0x00, 0x20, 0x00, 0x80}) // VERIFY status query
	fmt.Printf("%X\n", resp)
	err = card.Remove()
	fmt.Println(errors.Is(err, ErrCardNotInserted))
	// Output:
	// 63C3
	// true
}
