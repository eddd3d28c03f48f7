// Package virtualcard is a virtual PIV smart card (the NIST SP 800-73-4 subset OpenSC's PIV driver accepts) that
// speaks the vpcd protocol of vsmartcard: connected to vpcd's TCP port it is a card in pcscd's virtual reader, seen
// by pcscd, OpenSC and CardMail like a real one. It holds one testpki.Identity and can model a real card's timing
// (CardOptions.SignDelay, VerifyDelay). The bench drives it in tests; the demo inserts it for people without a card.
package virtualcard

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/cardmail/cardmail/internal/testpki"
)

// DefaultPIN and DefaultTries are the card defaults used when CardOptions leaves them empty.
const (
	DefaultPIN   = "123456"
	DefaultTries = 3
)

// DefaultATR is the PIV-II ATR of the virtual card: a compact TLV carrying the PIV AID, so that OpenSC picks its
// quirk-free PIV-II card type (test-bench.md).
var DefaultATR = []byte{0x3B, 0x8B, 0x80, 0x01, 0x80, 0xF9, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0xC8}

// pivAID is the full PIV application AID with version (NIST SP 800-73-4 part 1, 2.2); SELECT accepts any prefix of
// it that is at least as long as the RID (5 bytes).
var pivAID = []byte{0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}

// Status words (ISO 7816-4, SP 800-73-4 part 2).
const (
	swOK                 = 0x9000
	swWrongLength        = 0x6700
	swSecurityStatus     = 0x6982
	swAuthBlocked        = 0x6983
	swIncorrectData      = 0x6A80
	swFileNotFound       = 0x6A82
	swIncorrectP1P2      = 0x6A86
	swRefDataNotFound    = 0x6A88
	swINSNotSupported    = 0x6D00
	swCLANotSupported    = 0x6E00
	swConditionsNotSatis = 0x6985
)

// Errors returned by Card methods.
var (
	ErrCardInserted    = errors.New("virtualcard: card already inserted")
	ErrCardNotInserted = errors.New("virtualcard: card not inserted")
)

// maxChain bounds the data a chained command may accumulate, so a hostile or buggy host cannot grow memory.
const maxChain = 64 << 10

// CardOptions configures NewCard. The zero value gives PIN "123456", 3 tries and DefaultATR.
type CardOptions struct {
	PIN   string // default "123456"; PIV PIN is padded with 0xFF to 8 bytes
	Tries int    // default 3
	ATR   []byte // default the PIV-II ATR of test-bench.md (DefaultATR)
	// Log, when set, receives a line for every command the card does not implement and for protocol errors
	// (never PIN bytes). When nil and the environment has CARDMAIL_BENCH_DEBUG=1, lines go to the standard logger.
	Log func(format string, args ...any)
	// SignDelay and VerifyDelay model a real card's speed: each private-key operation and each VERIFY carrying a PIN
	// takes at least this long (the bench's card otherwise answers in microseconds). RealCard has figures measured
	// on real cards. A card removed during the delay answers nothing, like a real one.
	SignDelay, VerifyDelay time.Duration
}

// RealSignDelay and RealVerifyDelay are the timings of RealCard: published figures for RSA-2048 smart cards put a
// signature at 100-500 ms (300 ms is the middle of the range CPS cards show) and a PIN VERIFY at 10-900 ms.
const (
	RealSignDelay   = 300 * time.Millisecond
	RealVerifyDelay = 100 * time.Millisecond
)

// RealCard returns opt with the timings of a real card (RealSignDelay, RealVerifyDelay) where opt has none.
func RealCard(opt CardOptions) CardOptions {
	if opt.SignDelay == 0 {
		opt.SignDelay = RealSignDelay
	}
	if opt.VerifyDelay == 0 {
		opt.VerifyDelay = RealVerifyDelay
	}
	return opt
}

// CardCounters are counts of what the card was asked to do since NewCard.
type CardCounters struct {
	Verify      int // VERIFY commands carrying a PIN (Lc>0) only
	VerifyWrong int // of those, the ones whose PIN was wrong or that hit a blocked PIN
	Sign        int // private-key operations performed (GENERAL AUTHENTICATE with key 9A that returned a signature)
	APDUs       int // command APDUs received, all kinds
}

// Card is a virtual PIV card (the NIST SP 800-73-4 subset OpenSC's PIV driver accepts, see test-bench.md) holding
// one testpki.Identity in key slot 9A (PIV authentication). It connects to vpcd over TCP: connecting is inserting the card,
// closing the socket is removing it. All methods are safe for concurrent use.
type Card struct {
	id    *testpki.Identity
	atr   []byte
	pin   []byte // 8 bytes, FF-padded
	max   int
	chuid []byte // GET DATA response body for 5FC102
	cert  []byte // GET DATA response body for 5FC105
	logf  func(format string, args ...any)

	mu          sync.Mutex
	signDelay   time.Duration
	verifyDelay time.Duration
	tries       int
	verified    bool
	counters    CardCounters
	hook        func()
	sess        *cardSession
	chain       struct {
		active      bool
		ins, p1, p2 byte
		data        []byte
	}
	pending []byte // rest of a response, for GET RESPONSE
}

// NewCard makes a card holding id's certificate and key in slot 9A. The card is not inserted.
// A PIN longer than 8 bytes is truncated to 8 (PIV PINs are at most 8 bytes).
func NewCard(id *testpki.Identity, opt CardOptions) *Card {
	pin := opt.PIN
	if pin == "" {
		pin = DefaultPIN
	}
	tries := opt.Tries
	if tries <= 0 {
		tries = DefaultTries
	}
	if tries > 15 {
		tries = 15 // 63Cx carries 4 bits
	}
	atr := opt.ATR
	if len(atr) == 0 {
		atr = DefaultATR
	}
	c := &Card{id: id, atr: bytes.Clone(atr), pin: padPIN([]byte(pin)), max: tries, tries: tries, logf: opt.Log,
		signDelay: opt.SignDelay, verifyDelay: opt.VerifyDelay}
	if c.logf == nil && os.Getenv("CARDMAIL_BENCH_DEBUG") == "1" {
		c.logf = log.Printf
	}
	c.chuid = buildCHUID(id)
	c.cert = buildCertObject(id)
	return c
}

// testpki.Identity returns the identity the card holds.
func (c *Card) Identity() *testpki.Identity { return c.id }

// GUID returns the 16-byte card GUID of the CHUID (derived from the certificate, so stable across runs for one
// certificate and different between cards). OpenSC uses it as the token serial number.
func (c *Card) GUID() []byte { return cardGUID(c.id) }

// Counters returns a snapshot of the card's counters.
func (c *Card) Counters() CardCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counters
}

// TriesLeft returns the PIN tries left (0: blocked).
func (c *Card) TriesLeft() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tries
}

// SetSignHook sets h, called before each private-key operation in the goroutine that serves the APDU (the serving
// goroutine for a card in vpcd, the caller for Transmit), without the card's lock held. nil clears it.
// Inside the hook a test may block the signature or pull the card: Remove does not wait for a hook in progress, and
// a signature whose card was removed while the hook ran is dropped (no answer is sent).
func (c *Card) SetSignHook(h func()) {
	c.mu.Lock()
	c.hook = h
	c.mu.Unlock()
}

// SetDelays changes the card's signature and VERIFY delays (see CardOptions.SignDelay); it applies to commands that
// arrive afterwards.
func (c *Card) SetDelays(sign, verify time.Duration) {
	c.mu.Lock()
	c.signDelay, c.verifyDelay = sign, verify
	c.mu.Unlock()
}

// Transmit processes one command APDU as if it came from the reader and returns the response APDU (data + SW1 SW2).
// It is meant for unit tests; when the card is also inserted, interleaving with the host's commands is the caller's
// business. It never panics on malformed input (it answers a status word). apdu is not modified (the card works on
// a copy, which it zeroes when it held a PIN).
func (c *Card) Transmit(apdu []byte) []byte {
	buf := bytes.Clone(apdu)
	defer clear(buf)
	return c.transmit(buf, nil)
}

// resetState forgets the security status and any half-done chain or response, as a power off, reset or removal
// does. Callers hold c.mu.
func (c *Card) resetState() {
	c.verified = false
	c.chain.active = false
	c.chain.data = nil
	c.pending = nil
}

// control handles a vpcd control byte and returns the reply payload (nil: no reply).
func (c *Card) control(b byte, sess *cardSession) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sess != nil && c.sess != sess {
		return nil
	}
	switch b {
	case 0x00, 0x01, 0x02: // power off, power on, reset
		c.resetState()
		return nil
	case 0x04: // get ATR
		return bytes.Clone(c.atr)
	default:
		c.debug("unknown vpcd control byte %#02x", b)
		return nil
	}
}

func (c *Card) debug(format string, args ...any) {
	if c.logf != nil {
		c.logf("bench card %q: "+format, append([]any{c.id.Name}, args...)...)
	}
}

// command is a parsed command APDU (ISO 7816-4 5.1, short and extended length).
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
	ne               int // expected response length; 256 when absent in a short APDU
}

var errAPDULength = errors.New("virtualcard: malformed APDU length")

func parseAPDU(b []byte) (command, error) {
	if len(b) < 4 {
		return command{}, errAPDULength
	}
	cmd := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3], ne: 256}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
	case len(body) == 1: // case 2 short
		cmd.ne = int(body[0])
		if cmd.ne == 0 {
			cmd.ne = 256
		}
	case body[0] != 0: // case 3/4 short
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
		case 2 + lc:
			if n := int(body[1+lc]); n != 0 {
				cmd.ne = n
			}
		default:
			return command{}, errAPDULength
		}
		cmd.data = body[1 : 1+lc]
	case len(body) == 3: // case 2 extended
		cmd.ne = int(body[1])<<8 | int(body[2])
		if cmd.ne == 0 {
			cmd.ne = 65536
		}
	default: // case 3/4 extended
		if len(body) < 3 {
			return command{}, errAPDULength
		}
		lc := int(body[1])<<8 | int(body[2])
		if lc == 0 {
			return command{}, errAPDULength
		}
		switch len(body) {
		case 3 + lc:
			cmd.ne = 65536
		case 5 + lc:
			cmd.ne = int(body[3+lc])<<8 | int(body[4+lc])
			if cmd.ne == 0 {
				cmd.ne = 65536
			}
		default:
			return command{}, errAPDULength
		}
		cmd.data = body[3 : 3+lc]
	}
	return cmd, nil
}

func sw(code int) []byte { return []byte{byte(code >> 8), byte(code)} }

// transmit is Transmit; sess is the vpcd session serving the APDU, or nil for a direct call. A nil result means the
// card was removed while a sign hook ran: nothing must be answered.
func (c *Card) transmit(apdu []byte, sess *cardSession) []byte {
	c.mu.Lock()
	verifyDelay := c.verifyDelay
	c.mu.Unlock()
	if verifyDelay > 0 && isVerifyWithPIN(apdu) {
		// A real card takes its time over a PIN; the host waits like it would (the APDU is answered after it).
		c.wait(sess, verifyDelay)
	}
	c.mu.Lock()
	if sess != nil && c.sess != sess {
		c.mu.Unlock()
		return nil // removed: a stale goroutine must not touch the card
	}
	c.counters.APDUs++
	resp, sign := c.process(apdu)
	if sign == nil {
		c.mu.Unlock()
		return resp
	}
	hook, delay := c.hook, c.signDelay
	c.mu.Unlock()
	if hook != nil || delay > 0 {
		if sess != nil {
			sess.release() // Remove must not wait for a hook or a slow signature
		}
	}
	if hook != nil {
		hook()
	}
	c.wait(sess, delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	if sess != nil && c.sess != sess {
		return nil // removed meanwhile
	}
	if !c.verified {
		return sw(swSecurityStatus) // reset or removed and reinserted meanwhile
	}
	sig, err := rawRSA(c.id, sign)
	if err != nil {
		c.debug("private key operation: %v", err)
		return sw(swIncorrectData)
	}
	c.counters.Sign++
	body := tlv(0x7C, tlv(0x82, sig))
	return c.respond(body, sign.ne)
}

// wait sleeps d, or less when the card is removed meanwhile (the caller then sees the removal and answers nothing).
func (c *Card) wait(sess *cardSession, d time.Duration) {
	if d <= 0 {
		return
	}
	if sess == nil {
		time.Sleep(d)
		return
	}
	select {
	case <-time.After(d):
	case <-sess.gone:
	}
}

// isVerifyWithPIN reports a VERIFY command (INS 20) that carries data (a PIN), as opposed to a status query.
func isVerifyWithPIN(apdu []byte) bool {
	return len(apdu) > 5 && apdu[1] == 0x20 && apdu[4] > 0
}

// signRequest is a validated GENERAL AUTHENTICATE waiting for the hook.
type signRequest struct {
	input []byte
	ne    int
}

// process handles one APDU with c.mu held. It returns either a response or a sign request to finish outside the
// lock.
func (c *Card) process(apdu []byte) ([]byte, *signRequest) {
	cmd, err := parseAPDU(apdu)
	if err != nil {
		c.debug("malformed APDU (%d bytes)", len(apdu))
		c.chain.active, c.pending = false, nil
		return sw(swWrongLength), nil
	}
	if cmd.cla&^0x10 != 0x00 {
		c.debug("unsupported CLA %#02x (INS %#02x)", cmd.cla, cmd.ins)
		c.chain.active, c.pending = false, nil
		return sw(swCLANotSupported), nil
	}
	if cmd.ins == 0xC0 { // GET RESPONSE
		if cmd.cla != 0 || c.pending == nil {
			c.pending = nil
			return sw(swConditionsNotSatis), nil
		}
		rest := c.pending
		c.pending = nil
		return c.respond(rest, cmd.ne), nil
	}
	c.pending = nil

	// Command chaining (ISO 7816-4 5.1.1): CLA bit 0x10 means more data follows in the next command.
	if cmd.cla&0x10 != 0 {
		if c.chain.active && (c.chain.ins != cmd.ins || c.chain.p1 != cmd.p1 || c.chain.p2 != cmd.p2) {
			c.chain.data = nil
		}
		if len(c.chain.data)+len(cmd.data) > maxChain {
			c.chain.active, c.chain.data = false, nil
			return sw(swWrongLength), nil
		}
		c.chain.active = true
		c.chain.ins, c.chain.p1, c.chain.p2 = cmd.ins, cmd.p1, cmd.p2
		c.chain.data = append(c.chain.data, cmd.data...)
		return sw(swOK), nil
	}
	if c.chain.active {
		if c.chain.ins == cmd.ins && c.chain.p1 == cmd.p1 && c.chain.p2 == cmd.p2 {
			if len(c.chain.data)+len(cmd.data) > maxChain {
				c.chain.active, c.chain.data = false, nil
				return sw(swWrongLength), nil
			}
			cmd.data = append(c.chain.data, cmd.data...)
		}
		c.chain.active, c.chain.data = false, nil
	}

	switch cmd.ins {
	case 0xA4:
		return c.selectApp(cmd), nil
	case 0xCB:
		return c.getData(cmd), nil
	case 0x20:
		return c.verify(cmd), nil
	case 0x87:
		return c.generalAuthenticate(cmd)
	default:
		c.debug("unsupported INS: %02X %02X %02X %02X Lc=%d", cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data))
		return sw(swINSNotSupported), nil
	}
}

// respond sends at most ne bytes of body and keeps the rest for GET RESPONSE (61xx, ISO 7816-4 5.3.4).
func (c *Card) respond(body []byte, ne int) []byte {
	if ne <= 0 || ne > 256 {
		ne = 256 // we answer in short chunks even to extended Le: simpler and what the host must handle anyway
	}
	if len(body) <= ne {
		return append(bytes.Clone(body), 0x90, 0x00)
	}
	out := append(bytes.Clone(body[:ne]), 0x61, 0x00)
	rest := body[ne:]
	if len(rest) < 256 {
		out[len(out)-1] = byte(len(rest))
	}
	c.pending = rest
	return out
}

// selectApp: SELECT by AID (P1=04). Only the PIV AID (or a prefix of at least the RID) is found; the answer is the
// application property template (SP 800-73-4 part 2, 3.1.1).
func (c *Card) selectApp(cmd command) []byte {
	if cmd.p1 != 0x04 {
		c.debug("SELECT with P1=%#02x P2=%#02x", cmd.p1, cmd.p2)
		return sw(swFileNotFound)
	}
	if len(cmd.data) < 5 || !bytes.HasPrefix(pivAID, cmd.data) {
		return sw(swFileNotFound)
	}
	apt := tlv(0x61, concat(
		tlv(0x4F, []byte{0x00, 0x00, 0x10, 0x00, 0x01, 0x00}),      // PIX of the application
		tlv(0x79, tlv(0x4F, pivAID[:5])),                           // coexistent tag allocation authority: NIST RID
		tlv(0x50, []byte("CardMail virtual PIV")),                  // application label
		tlv(0xAC, concat(tlv(0x80, []byte{0x07}), tlv(0x06, nil))), // algorithms: RSA-2048
	))
	return c.respond(apt, cmd.ne)
}

// getData: GET DATA 00 CB 3F FF, data 5C 03 <object tag> (SP 800-73-4 part 2, 3.1.2).
func (c *Card) getData(cmd command) []byte {
	if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
		return sw(swIncorrectP1P2)
	}
	tag, ok := findTLV(cmd.data, 0x5C)
	if !ok {
		return sw(swIncorrectData)
	}
	switch hex.EncodeToString(tag) {
	case "5fc102":
		return c.respond(c.chuid, cmd.ne)
	case "5fc105":
		return c.respond(c.cert, cmd.ne)
	default:
		// Discovery object 7E, key history 5FC10C, other certificates, CCC ...: not on this card.
		c.debug("GET DATA for absent object %X", tag)
		return sw(swFileNotFound)
	}
}

// verify: VERIFY 00 20 00 80 (SP 800-73-4 part 2, 3.2.1). No data: status query. P1=FF: reset the security status.
func (c *Card) verify(cmd command) []byte {
	if cmd.p2 != 0x80 {
		return sw(swRefDataNotFound)
	}
	if cmd.p1 == 0xFF && len(cmd.data) == 0 {
		c.verified = false
		return sw(swOK)
	}
	if cmd.p1 != 0x00 {
		return sw(swIncorrectP1P2)
	}
	if len(cmd.data) == 0 {
		switch {
		case c.verified:
			return sw(swOK)
		case c.tries == 0:
			return sw(swAuthBlocked)
		default:
			return sw(0x63C0 | c.tries)
		}
	}
	c.counters.Verify++
	defer clear(cmd.data) // the PIN leaves memory with the command
	if c.tries == 0 {
		c.counters.VerifyWrong++
		return sw(swAuthBlocked)
	}
	if len(cmd.data) != 8 {
		return sw(swIncorrectData)
	}
	if subtle.ConstantTimeCompare(cmd.data, c.pin) != 1 {
		c.counters.VerifyWrong++
		c.verified = false
		c.tries--
		return sw(0x63C0 | c.tries)
	}
	c.tries = c.max
	c.verified = true
	return sw(swOK)
}

// generalAuthenticate: 00 87 07 9A 7C{82 00, 81 <input>} (SP 800-73-4 part 2, 3.2.4): raw RSA private operation with
// the 9A key, only after VERIFY.
func (c *Card) generalAuthenticate(cmd command) ([]byte, *signRequest) {
	if cmd.p1 != 0x07 {
		return sw(swIncorrectP1P2), nil
	}
	if cmd.p2 != 0x9A {
		return sw(swRefDataNotFound), nil
	}
	dyn, ok := findTLV(cmd.data, 0x7C)
	if !ok {
		return sw(swIncorrectData), nil
	}
	input, ok := findTLV(dyn, 0x81)
	if !ok {
		c.debug("GENERAL AUTHENTICATE without challenge tag 81")
		return sw(swIncorrectData), nil
	}
	if _, ok := findTLV(dyn, 0x82); !ok {
		return sw(swIncorrectData), nil
	}
	if len(input) != c.id.Key.Size() {
		return sw(swIncorrectData), nil
	}
	if !c.verified {
		return sw(swSecurityStatus), nil
	}
	return nil, &signRequest{input: bytes.Clone(input), ne: cmd.ne}
}

// rawRSA computes input^d mod n with the CRT, left-padded to the modulus size.
func rawRSA(id *testpki.Identity, req *signRequest) ([]byte, error) {
	k := id.Key
	m := new(big.Int).SetBytes(req.input)
	if m.Cmp(k.N) >= 0 {
		return nil, fmt.Errorf("input not below modulus")
	}
	var s *big.Int
	if len(k.Primes) == 2 && k.Precomputed.Dp != nil && k.Precomputed.Dq != nil && k.Precomputed.Qinv != nil {
		p, q := k.Primes[0], k.Primes[1]
		m1 := new(big.Int).Exp(m, k.Precomputed.Dp, p)
		m2 := new(big.Int).Exp(m, k.Precomputed.Dq, q)
		h := new(big.Int).Sub(m1, m2)
		h.Mul(h, k.Precomputed.Qinv).Mod(h, p)
		s = h.Mul(h, q).Add(h, m2)
	} else {
		s = new(big.Int).Exp(m, k.D, k.N)
	}
	// Check before answering, like a careful card: s^e must give m back.
	if new(big.Int).Exp(s, big.NewInt(int64(k.E)), k.N).Cmp(m) != 0 {
		return nil, fmt.Errorf("RSA self-check failed")
	}
	return s.FillBytes(make([]byte, k.Size())), nil
}

// testFASCN is the FASC-N of the CHUID: a fixed test value (agency code 9999, as for PIV-compatible cards, so that
// OpenSC uses the GUID as the serial number).
var testFASCN = []byte{0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68, 0x58, 0x21,
	0x08, 0x42, 0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB}

func cardGUID(id *testpki.Identity) []byte {
	h := sha256.Sum256(id.Cert.Raw)
	g := h[:16:16]
	g[6] = g[6]&0x0F | 0x40 // RFC 4122 version 4 layout, so it looks like a GUID
	g[8] = g[8]&0x3F | 0x80
	return bytes.Clone(g)
}

// buildCHUID is the CHUID container (SP 800-73-4 part 1, table 9): FASC-N, GUID, expiration date, empty signature,
// error detection code.
func buildCHUID(id *testpki.Identity) []byte {
	return tlv(0x53, concat(
		tlv(0x30, testFASCN),
		tlv(0x34, cardGUID(id)),
		tlv(0x35, []byte(id.Cert.NotAfter.Format("20060102"))),
		tlv(0x3E, nil),
		tlv(0xFE, nil),
	))
}

// buildCertObject is the X.509 certificate for PIV authentication container (SP 800-73-4 part 1, table 10):
// certificate, CertInfo 00 (not compressed), error detection code.
func buildCertObject(id *testpki.Identity) []byte {
	return tlv(0x53, concat(tlv(0x70, id.Cert.Raw), tlv(0x71, []byte{0x00}), tlv(0xFE, nil)))
}

// tlv encodes a one-byte tag with a BER length (ISO 7816-4 5.2.2).
func tlv(tag byte, v []byte) []byte {
	out := []byte{tag}
	switch n := len(v); {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, v...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// findTLV scans a sequence of one-byte-tag BER-TLVs for tag and returns its value. Malformed input gives false.
func findTLV(b []byte, tag byte) ([]byte, bool) {
	for len(b) >= 2 {
		t := b[0]
		n, hl := 0, 0
		switch l := b[1]; {
		case l < 0x80:
			n, hl = int(l), 2
		case l == 0x81 && len(b) >= 3:
			n, hl = int(b[2]), 3
		case l == 0x82 && len(b) >= 4:
			n, hl = int(b[2])<<8|int(b[3]), 4
		default:
			return nil, false
		}
		if len(b) < hl+n {
			return nil, false
		}
		if t == tag {
			return b[hl : hl+n], true
		}
		b = b[hl+n:]
	}
	return nil, false
}

func padPIN(pin []byte) []byte {
	out := bytes.Repeat([]byte{0xFF}, 8)
	copy(out, pin)
	return out
}

// cardSession is one insertion: the socket to vpcd and the serving goroutine.
type cardSession struct {
	conn     net.Conn
	addr     string
	done     chan struct{} // closed when the serving goroutine ends
	released chan struct{} // closed when the goroutine ends or enters a sign hook
	relOnce  sync.Once
	gone     chan struct{} // closed by Remove: ends a delay in progress
	goneOnce sync.Once
}

func (s *cardSession) leave() { s.goneOnce.Do(func() { close(s.gone) }) }

func (s *cardSession) release() { s.relOnce.Do(func() { close(s.released) }) }
