package mail

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-sasl"

	"github.com/cardmail/cardmail/session"
)

// IMAPStream is an IMAP connection that was made with the card and logged in, handed over as a byte stream: the
// bridge relays a local mail client's session over it, so every extension the server offers works as it would
// directly. The pre-authentication dialogue (greeting, CAPABILITY, STARTTLS, AUTHENTICATE/LOGIN) is spoken here by
// a minimal client that reads exactly up to the login's tagged reply, which is why it is not go-imap's client (that
// one owns the connection and reads ahead). The session manager closes the stream when the card generation it was
// made with ends.
type IMAPStream struct {
	// Conn is the TLS connection. Read through Reader, which holds what the server sent after the login reply
	// (normally nothing); write to Conn.
	Conn   net.Conn
	Reader *bufio.Reader
	// Caps are the server's capabilities after the login, as it spelled them.
	Caps []string
	// Mechanism is the login mechanism used: "EXTERNAL", "LOGIN", "PLAIN" or "PREAUTH".
	Mechanism string

	cn      *conn
	untrack func()
	once    sync.Once
}

// Identity returns the card identity the stream was made with.
func (s *IMAPStream) Identity() *session.Identity { return s.cn.id }

// Close closes the connection at once (no LOGOUT: the relayed client says it when it wants). Safe to call more than
// once, and after the manager closed it.
func (s *IMAPStream) Close() error {
	s.once.Do(func() {
		if s.untrack != nil {
			s.untrack()
		}
		_ = s.cn.raw.Close()
	})
	return nil
}

// maxWireLine bounds one server line of the pre-authentication dialogue.
const maxWireLine = 64 << 10

// IMAPStream connects to a.IMAP, makes the TLS handshake with the card, logs in (see Auth) and returns the
// connection as a stream, tracked by its card's session manager. Like IMAP, a failed resumption is retried once with a full
// handshake. Errors are *StepError wrapping the typed cause, as for IMAP.
func (d *Dialer) IMAPStream(ctx context.Context, a Account) (*IMAPStream, error) {
	if err := a.check(a.IMAP); err != nil {
		return nil, err
	}
	var s *IMAPStream
	err := d.retryResumption(ctx, func(cn *conn) (err error) {
		s, err = d.streamOnce(ctx, a, cn)
		return err
	})
	return s, err
}

// streamOnce is one connection attempt of IMAPStream.
func (d *Dialer) streamOnce(ctx context.Context, a Account, cn *conn) (*IMAPStream, error) {
	cfg, err := d.open(ctx, a, a.IMAP, cn)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			cn.raw.Close()
		}
	}()
	var wc *wireClient
	switch a.IMAP.Security {
	case profile.Implicit:
		tc, err := cn.handshake(ctx, cfg)
		if err != nil {
			return nil, err
		}
		wc = newWireClient(tc)
		if err := cn.step(ctx, StepGreeting, func() error { return cn.rec.Explain(wc.greeting()) }); err != nil {
			return nil, err
		}
	case profile.StartTLS:
		wc = newWireClient(cn.raw)
		if err := cn.step(ctx, StepGreeting, wc.greeting); err != nil {
			return nil, err
		}
		if err := cn.step(ctx, StepStartTLS, wc.startTLS); err != nil {
			return nil, err
		}
		tc, err := cn.handshake(ctx, cfg)
		if err != nil {
			return nil, err
		}
		wc = newWireClient(tc)
		if err := cn.step(ctx, StepGreeting, func() error { return cn.rec.Explain(wc.capability()) }); err != nil {
			return nil, err
		}
	}
	var mech string
	if err := cn.step(ctx, StepAuth, func() error {
		var err error
		mech, err = wc.login(a)
		return cn.rec.Explain(err)
	}); err != nil {
		return nil, err
	}
	s := &IMAPStream{Conn: wc.conn, Reader: wc.r, Caps: wc.caps, Mechanism: mech, cn: cn}
	s.untrack = cn.id.Track(closerFunc(func() error { return cn.raw.Close() }))
	ok = true
	return s, nil
}

// wireClient speaks the pre-authentication part of IMAP4rev1 (RFC 3501 §6.1-6.2, SASL-IR RFC 4959) and nothing
// else; it never reads past the tagged reply of its last command.
type wireClient struct {
	conn    net.Conn
	r       *bufio.Reader
	seq     int
	caps    []string
	preauth bool
}

func newWireClient(c net.Conn) *wireClient {
	return &wireClient{conn: c, r: bufio.NewReaderSize(c, 4096)}
}

// reply is a server's tagged completion.
type reply struct {
	status string // "OK", "NO", "BAD"
	text   string // the rest, with its response code
}

var capCodeRe = regexp.MustCompile(`(?i)^\[CAPABILITY ([^\]]*)\]`)

// readLine reads one server line without its CRLF. A literal at its end ({n}) is read and dropped with the rest of
// the response (no pre-authentication response this client uses carries one).
func (c *wireClient) readLine() (string, error) {
	var b strings.Builder
	for {
		chunk, err := c.r.ReadSlice('\n')
		if b.Len()+len(chunk) > maxWireLine {
			return "", &ProtocolError{Step: StepGreeting, Response: "server line longer than 64 KiB"}
		}
		b.Write(chunk)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if err == io.EOF && b.Len() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		line := strings.TrimRight(b.String(), "\r\n")
		n, isLit := literalAtEnd(line)
		if !isLit {
			return line, nil
		}
		if n > maxWireLine {
			return "", &ProtocolError{Step: StepGreeting, Response: "server literal larger than 64 KiB"}
		}
		if _, err := io.CopyN(io.Discard, c.r, n); err != nil {
			return "", err
		}
		b.Reset()
		b.WriteString(line)
	}
}

// literalAtEnd reports a literal announcement ({n}, {n+} or ~{n}) at the end of line and its size.
func literalAtEnd(line string) (int64, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(line[i+1:len(line)-1], "+"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// untagged notes what an untagged line says about capabilities.
func (c *wireClient) untagged(line string) {
	rest := line[2:]
	if strings.HasPrefix(strings.ToUpper(rest), "CAPABILITY ") {
		c.caps = strings.Fields(rest[len("CAPABILITY "):])
		return
	}
	if sp := strings.IndexByte(rest, ' '); sp > 0 {
		if m := capCodeRe.FindStringSubmatch(rest[sp+1:]); m != nil {
			c.caps = strings.Fields(m[1])
		}
	}
}

// greeting reads the server greeting: OK (login needed), PREAUTH (already logged in) or BYE (refused).
func (c *wireClient) greeting() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	up := strings.ToUpper(line)
	switch {
	case strings.HasPrefix(up, "* OK"):
	case strings.HasPrefix(up, "* PREAUTH"):
		c.preauth = true
	default:
		return &ProtocolError{Step: StepGreeting, Response: printableLine(line)}
	}
	c.untagged(line)
	return nil
}

// command sends one command (the tag is added) and reads until its tagged reply. cont answers continuation
// requests; nil sends "*" (cancel).
func (c *wireClient) command(cmd string, cont func(challenge string) string) (reply, error) {
	c.seq++
	tag := "C" + strconv.Itoa(c.seq)
	if _, err := io.WriteString(c.conn, tag+" "+cmd+"\r\n"); err != nil {
		return reply{}, err
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return reply{}, err
		}
		switch {
		case strings.HasPrefix(line, "* "):
			c.untagged(line)
		case line == "+" || strings.HasPrefix(line, "+ "):
			answer := "*"
			if cont != nil {
				answer = cont(strings.TrimPrefix(strings.TrimPrefix(line, "+"), " "))
			}
			if _, err := io.WriteString(c.conn, answer+"\r\n"); err != nil {
				return reply{}, err
			}
		case strings.HasPrefix(line, tag+" "):
			status, text, _ := strings.Cut(line[len(tag)+1:], " ")
			r := reply{status: strings.ToUpper(status), text: text}
			if m := capCodeRe.FindStringSubmatch(text); m != nil {
				c.caps = strings.Fields(m[1])
			}
			return r, nil
		default:
			return reply{}, &ProtocolError{Step: StepGreeting, Response: printableLine(line)}
		}
	}
}

// capability asks the capabilities when the greeting (or the last reply) did not list them.
func (c *wireClient) capability() error {
	c.caps = nil
	r, err := c.command("CAPABILITY", nil)
	if err != nil {
		return err
	}
	if r.status != "OK" {
		return &ProtocolError{Step: StepGreeting, Response: printableLine(r.status + " " + r.text)}
	}
	return nil
}

func (c *wireClient) has(capName string) bool {
	for _, x := range c.caps {
		if strings.EqualFold(x, capName) {
			return true
		}
	}
	return false
}

// startTLS sends STARTTLS on the plaintext connection. Bytes the server sent after its OK would be an injection
// (CVE-2011-0411 class): they fail the step.
func (c *wireClient) startTLS() error {
	if c.caps == nil {
		if err := c.capability(); err != nil {
			return err
		}
	}
	if !c.has("STARTTLS") {
		return ErrStartTLSUnavailable
	}
	r, err := c.command("STARTTLS", nil)
	if err != nil {
		return err
	}
	if r.status != "OK" {
		return &ProtocolError{Step: StepStartTLS, Response: printableLine(r.status + " " + r.text), Err: ErrStartTLSUnavailable}
	}
	if c.r.Buffered() > 0 {
		return &ProtocolError{Step: StepStartTLS, Response: "plaintext data after the STARTTLS reply"}
	}
	return nil
}

// login logs in per a.Auth and returns the mechanism used; the capabilities are the server's after the login.
func (c *wireClient) login(a Account) (string, error) {
	if c.preauth {
		return "PREAUTH", c.capability()
	}
	if c.caps == nil {
		if err := c.capability(); err != nil {
			return "", err
		}
	}
	offered := map[string]bool{}
	for _, x := range c.caps {
		if m, ok := strings.CutPrefix(strings.ToUpper(x), "AUTH="); ok {
			offered[m] = true
		}
	}
	mech, err := chooseMechanism(a.auth(), offered, !c.has("LOGINDISABLED"))
	if err != nil {
		return "", err
	}
	c.caps = nil
	var r reply
	switch mech {
	case "EXTERNAL", "PLAIN":
		var cl sasl.Client = sasl.NewExternalClient("")
		if mech == "PLAIN" {
			cl = sasl.NewPlainClient("", a.Address, a.Password)
		}
		_, ir, _ := cl.Start()
		enc := base64.StdEncoding.EncodeToString(ir) // "" for an empty response (RFC 3501 §6.2.2)
		if c.has("SASL-IR") {
			ir := enc
			if ir == "" {
				ir = "=" // an empty initial response (RFC 4959 §3)
			}
			r, err = c.command("AUTHENTICATE "+mech+" "+ir, nil)
		} else {
			sent := false
			r, err = c.command("AUTHENTICATE "+mech, func(string) string {
				if sent {
					return "*" // no further challenge is expected from EXTERNAL or PLAIN
				}
				sent = true
				return enc
			})
		}
	case "LOGIN":
		var user, pass string
		if user, err = c.astring(a.Address); err == nil {
			if pass, err = c.astring(a.Password); err == nil {
				r, err = c.loginCommand(user, pass)
			}
		}
	}
	if err != nil {
		return mech, err
	}
	if r.status != "OK" {
		return mech, &AuthError{Mechanism: mech, Response: Redact(printableLine(r.text), a.Password)}
	}
	if c.caps == nil {
		if err := c.capability(); err != nil {
			return mech, err
		}
	}
	return mech, nil
}

// astring renders s as an IMAP quoted string; strings that cannot be quoted (CR, LF, NUL, 8-bit) are refused: an
// account whose password needs a literal uses PLAIN.
func (c *wireClient) astring(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == '\r' || b == '\n' || b == 0 || b >= 0x80 {
			return "", &ConfigError{Field: "Password", Value: "(characters LOGIN cannot quote; use plain)"}
		}
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

// loginCommand sends LOGIN; its arguments never reach an error or a log.
func (c *wireClient) loginCommand(user, pass string) (reply, error) {
	return c.command(fmt.Sprintf("LOGIN %s %s", user, pass), nil)
}

// printableLine keeps a server line printable and short for errors.
func printableLine(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	b := []byte(s)
	for i, x := range b {
		if x < 0x20 || x == 0x7f {
			b[i] = '.'
		}
	}
	return string(b)
}
