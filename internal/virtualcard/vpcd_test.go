package virtualcard

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// fakeVPCD is the reader side of the vpcd protocol on a loopback listener, to test Card.Insert/serve/Remove
// without pcscd.
type fakeVPCD struct {
	ln   net.Listener
	conn net.Conn
}

func newFakeVPCD(t *testing.T) *fakeVPCD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeVPCD{ln: ln}
}

func (f *fakeVPCD) accept(t *testing.T) {
	t.Helper()
	_ = f.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := f.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.conn = conn
}

func (f *fakeVPCD) send(t *testing.T, payload []byte) {
	t.Helper()
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(payload)))
	// Two writes, as vpcd does.
	if _, err := f.conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.Write(payload); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeVPCD) recv(t *testing.T) ([]byte, error) {
	t.Helper()
	_ = f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(f.conn, hdr[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(f.conn, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (f *fakeVPCD) transmit(t *testing.T, apdu []byte) []byte {
	t.Helper()
	f.send(t, apdu)
	resp, err := f.recv(t)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return resp
}

func TestCardVPCDProtocol(t *testing.T) {
	_, alice, _ := unitPKI(t)
	v := newFakeVPCD(t)
	c := NewCard(alice, CardOptions{})
	if err := c.Insert(v.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	v.accept(t)
	if !c.Inserted() || c.Addr() != v.ln.Addr().String() {
		t.Fatalf("Inserted %v Addr %q", c.Inserted(), c.Addr())
	}
	if err := c.Insert(v.ln.Addr().String()); !errors.Is(err, ErrCardInserted) {
		t.Fatalf("second Insert: %v, want ErrCardInserted", err)
	}
	v.send(t, []byte{0x01}) // power on: no reply
	v.send(t, []byte{0x04}) // get ATR
	if atr, err := v.recv(t); err != nil || !bytes.Equal(atr, DefaultATR) {
		t.Fatalf("ATR %X, %v", atr, err)
	}
	if sw := swOf(v.transmit(t, selectPIV)); sw != 0x9000 {
		t.Fatalf("SELECT SW %04X", sw)
	}
	if sw := swOf(v.transmit(t, bytes.Clone(pinRight))); sw != 0x9000 {
		t.Fatalf("VERIFY SW %04X", sw)
	}
	v.send(t, []byte{0x02}) // reset: security status gone, no reply
	if sw := swOf(v.transmit(t, verifyStatus)); sw != 0x63C3 {
		t.Fatalf("status after reset: SW %04X, want 63C3", sw)
	}
	if n := c.Counters().APDUs; n != 3 {
		t.Fatalf("APDUs %d, want 3", n)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if c.Inserted() {
		t.Fatal("still inserted after Remove")
	}
	if _, err := v.recv(t); err == nil {
		t.Fatal("reader still connected after Remove")
	}
	if err := c.Remove(); !errors.Is(err, ErrCardNotInserted) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestCardReaderHangsUp(t *testing.T) {
	_, alice, _ := unitPKI(t)
	v := newFakeVPCD(t)
	c := NewCard(alice, CardOptions{})
	if err := c.Insert(v.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	v.accept(t)
	v.conn.Close() // pcscd killed
	deadline := time.Now().Add(5 * time.Second)
	for c.Inserted() {
		if time.Now().After(deadline) {
			t.Fatal("card still inserted 5 s after the reader closed the connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Remove(); !errors.Is(err, ErrCardNotInserted) {
		t.Fatalf("Remove: %v", err)
	}
	// It can be inserted again.
	if err := c.Insert(v.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	v.accept(t)
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
}

func TestCardInsertNoReader(t *testing.T) {
	_, alice, _ := unitPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewCard(alice, CardOptions{})
	err = c.Insert(addr)
	var ie *InsertError
	if !errors.As(err, &ie) || ie.Addr != addr {
		t.Fatalf("Insert into closed port: %v, want *InsertError", err)
	}
	if c.Inserted() {
		t.Fatal("inserted after failed Insert")
	}
}

// TestCardRemoveDuringSign pulls the card from inside the sign hook: Remove must return while the hook still runs,
// and the signature must never be answered.
func TestCardRemoveDuringSign(t *testing.T) {
	_, alice, _ := unitPKI(t)
	v := newFakeVPCD(t)
	c := NewCard(alice, CardOptions{})
	if err := c.Insert(v.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	v.accept(t)
	v.transmit(t, bytes.Clone(pinRight))

	removed := make(chan error, 1)
	hookDone := make(chan struct{})
	c.SetSignHook(func() {
		removed <- c.Remove() // from the serving goroutine itself: must not deadlock
		close(hookDone)
	})
	digest := sha256.Sum256([]byte("m"))
	v.send(t, gaCommand(pkcs1Block(t, alice.Key, digest[:])))
	select {
	case err := <-removed:
		if err != nil {
			t.Fatalf("Remove in hook: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Remove inside the sign hook did not return")
	}
	<-hookDone
	if resp, err := v.recv(t); err == nil {
		t.Fatalf("reader got an answer after removal: %X", resp)
	}
	if n := c.Counters().Sign; n != 0 {
		t.Fatalf("Sign counter %d after removal mid-signature, want 0", n)
	}
}

// TestCardBlockedSign blocks a signature in the hook while another goroutine removes the card.
func TestCardBlockedSign(t *testing.T) {
	_, alice, _ := unitPKI(t)
	v := newFakeVPCD(t)
	c := NewCard(alice, CardOptions{})
	if err := c.Insert(v.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	v.accept(t)
	v.transmit(t, bytes.Clone(pinRight))
	entered, release := make(chan struct{}), make(chan struct{})
	c.SetSignHook(func() { close(entered); <-release })
	digest := sha256.Sum256([]byte("m"))
	v.send(t, gaCommand(pkcs1Block(t, alice.Key, digest[:])))
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("hook not called")
	}
	if err := c.Remove(); err != nil { // returns although the hook still blocks
		t.Fatal(err)
	}
	close(release)
	if _, err := v.recv(t); err == nil {
		t.Fatal("answer after removal")
	}
}
