package virtualcard

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cardmail/cardmail/internal/quickack"
)

// DialTimeout bounds the TCP connect to vpcd in Card.Insert.
const DialTimeout = 3 * time.Second

// InsertError reports that a card could not be inserted: vpcd at Addr did not accept the connection (pcscd not
// running, or the vpcd driver not loaded).
type InsertError struct {
	Addr string
	Err  error
}

func (e *InsertError) Error() string {
	return fmt.Sprintf("virtualcard: insert card into vpcd at %s: %v", e.Addr, e.Err)
}
func (e *InsertError) Unwrap() error { return e.Err }

// Insert dials vpcd at addr (e.g. "127.0.0.1:35963") and serves its APDUs in a goroutine until Remove, or until vpcd
// closes the connection (pcscd killed): then the card counts as removed. Insertion starts with a fresh security
// status (PIN not verified). Errors: ErrCardInserted if the card is already inserted, *InsertError if the dial fails.
func (c *Card) Insert(addr string) error {
	c.mu.Lock()
	if c.sess != nil {
		c.mu.Unlock()
		return fmt.Errorf("%w (in %s)", ErrCardInserted, c.sess.addr)
	}
	// Reserve the card while dialling so that two Inserts cannot both succeed.
	sess := &cardSession{addr: addr, done: make(chan struct{}), released: make(chan struct{}), gone: make(chan struct{})}
	c.sess = sess
	c.mu.Unlock()

	conn, err := net.DialTimeout("tcp", addr, DialTimeout)
	if err != nil {
		c.mu.Lock()
		if c.sess == sess {
			c.sess = nil
		}
		c.mu.Unlock()
		return &InsertError{Addr: addr, Err: err}
	}
	c.mu.Lock()
	if c.sess != sess { // Remove ran during the dial
		c.mu.Unlock()
		conn.Close()
		return &InsertError{Addr: addr, Err: ErrCardNotInserted}
	}
	sess.conn = conn
	c.resetState()
	c.mu.Unlock()
	go c.serve(sess)
	return nil
}

// Remove closes the socket (the card leaves the reader) and waits until the serving goroutine has ended, or is
// parked in a sign hook (a signature pending there is then dropped). Removal resets the security status.
// Errors: ErrCardNotInserted when the card is not inserted (including after vpcd dropped it).
func (c *Card) Remove() error {
	c.mu.Lock()
	sess := c.sess
	if sess == nil || sess.conn == nil {
		c.mu.Unlock()
		return ErrCardNotInserted
	}
	c.sess = nil
	c.resetState()
	c.mu.Unlock()
	sess.leave()
	sess.conn.Close()
	<-sess.released
	return nil
}

// Inserted reports whether the card is connected to vpcd.
func (c *Card) Inserted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil && c.sess.conn != nil
}

// Addr returns the vpcd address the card is inserted in, or "" when it is not inserted.
func (c *Card) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil || c.sess.conn == nil {
		return ""
	}
	return c.sess.addr
}

// serve speaks the vpcd protocol on sess.conn: every message is a 2-byte big-endian length and a payload; a 1-byte
// payload is a control byte, a longer one a command APDU answered with a response APDU.
func (c *Card) serve(sess *cardSession) {
	defer func() {
		sess.conn.Close()
		c.mu.Lock()
		if c.sess == sess {
			c.sess = nil
			c.resetState()
		}
		c.mu.Unlock()
		sess.release()
		close(sess.done)
	}()
	var hdr [2]byte
	buf := make([]byte, 0, 1024)
	for {
		quickack.Now(sess.conn)
		if _, err := io.ReadFull(sess.conn, hdr[:]); err != nil {
			c.endDebug(sess, err)
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		buf = buf[:n]
		quickack.Now(sess.conn)
		if _, err := io.ReadFull(sess.conn, buf); err != nil {
			c.endDebug(sess, err)
			return
		}
		var reply []byte
		switch n {
		case 0:
			c.debug("empty vpcd message")
			continue
		case 1:
			reply = c.control(buf[0], sess)
			if reply == nil {
				if !c.isCurrent(sess) {
					return
				}
				continue
			}
		default:
			reply = c.transmit(buf, sess)
			clear(buf) // may have held a PIN
			if reply == nil {
				return // removed during a sign hook
			}
		}
		out := make([]byte, 2+len(reply))
		binary.BigEndian.PutUint16(out, uint16(len(reply)))
		copy(out[2:], reply)
		if _, err := sess.conn.Write(out); err != nil {
			c.endDebug(sess, err)
			return
		}
	}
}

func (c *Card) isCurrent(sess *cardSession) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess == sess
}

func (c *Card) endDebug(sess *cardSession, err error) {
	c.mu.Lock()
	current := c.sess == sess
	c.mu.Unlock()
	if current && err != io.EOF {
		c.debug("vpcd connection %s ended: %v", sess.addr, err)
	}
}
