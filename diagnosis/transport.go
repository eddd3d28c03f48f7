package diagnosis

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/mail"
)

// maxGreeting bounds what the ladder reads of a plaintext greeting (a hostile server cannot exhaust memory).
const maxGreeting = 16 << 10

// resolve is the dns step.
func (r *run) resolve(ctx context.Context) (string, error) {
	ips, err := r.lookup(ctx)
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	r.addrs = ips
	return strings.Join(s, " "), err
}

func (r *run) lookup(ctx context.Context) ([]net.IP, error) {
	if ip := net.ParseIP(strings.Trim(r.srv.Host, "[]")); ip != nil {
		return []net.IP{ip}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.t.Timeout)
	defer cancel()
	addrs, err := r.t.Resolver.LookupIPAddr(ctx, r.srv.Host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		ips = append(ips, a.IP)
	}
	return ips, nil
}

// connect is the connect step: it dials the resolved addresses in order (at most 3) and keeps the first connection.
func (r *run) connect(ctx context.Context) (string, error) {
	d := net.Dialer{Timeout: r.t.Timeout}
	err := errors.New("no address")
	for i, ip := range r.addrs {
		if i == 3 {
			break
		}
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(r.srv.Port))
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", addr); err == nil {
			r.setRaw(c)
			r.addr = addr
			_ = c.SetDeadline(time.Now().Add(r.t.Timeout))
			return addr + " from " + c.LocalAddr().String(), nil
		}
	}
	return "", err
}

// plainGreeting is the greeting step before STARTTLS. The ladder reads the greeting itself, because what the first
// bytes are (a TLS record; silence that a probe answers with TLS) tells a wrong security mode from a slow server;
// the bytes are then replayed to the protocol library (startTLS).
func (r *run) plainGreeting(ctx context.Context) (string, error) {
	line, raw, err := readGreeting(r.raw, r.t.Protocol, r.t.GreetingTimeout)
	var ge *GreetingError
	if errors.As(err, &ge) && ge.TLS {
		r.log.add(fmt.Sprintf("<TLS record % x instead of a greeting>", raw[:2]))
	}
	if errors.As(err, &ge) && ge.Timeout {
		if r.reachesTLS(ctx, r.addr, false, tls.VersionTLS10, tls.VersionTLS13, allSuites()) {
			r.facts.Probe = ProbeTLSPort
			return "probe: a TLS handshake succeeds on this port", err
		}
	}
	if err != nil {
		return "", err
	}
	r.greeting = raw
	r.rep.Server.Greeting = printable(line)
	return printable(line), nil
}

// readGreeting reads the greeting of protocol from c within timeout: IMAP "* OK" or "* PREAUTH", SMTP "220" (several
// lines allowed). It returns the first line and every byte it read (to replay). Errors are *GreetingError.
func readGreeting(c net.Conn, protocol string, timeout time.Duration) (first string, raw []byte, err error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 0, 512)
	chunk := make([]byte, 512)
	for {
		if len(buf) >= 2 && (buf[0] == 0x15 || buf[0] == 0x16) && buf[1] == 0x03 {
			return "", buf, &GreetingError{Protocol: protocol, TLS: true}
		}
		if lines, done := greetingLines(buf, protocol); done {
			return lines[0], buf, checkGreeting(lines, protocol)
		}
		if len(buf) > maxGreeting {
			return "", buf, &GreetingError{Protocol: protocol, Line: printable(string(buf[:120])), Err: errLineTooLong}
		}
		n, rerr := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if rerr != nil && n == 0 {
			if rerr == io.EOF && len(buf) > 0 {
				rerr = io.ErrUnexpectedEOF
			}
			return "", buf, &GreetingError{Protocol: protocol, Timeout: isTimeout(rerr), Err: rerr}
		}
	}
}

var errLineTooLong = errors.New("server line too long")

// greetingLines splits buf into complete lines and reports whether the greeting is complete: the first line for
// IMAP, up to a line that does not continue ("220-") for SMTP.
func greetingLines(buf []byte, protocol string) ([]string, bool) {
	var lines []string
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return lines, false
		}
		line := strings.TrimRight(string(buf[:i]), "\r")
		buf = buf[i+1:]
		lines = append(lines, line)
		if protocol == ProtocolIMAP || !strings.HasPrefix(line, "220-") {
			return lines, true
		}
	}
}

// checkGreeting accepts a complete greeting of protocol.
func checkGreeting(lines []string, protocol string) error {
	last := lines[len(lines)-1]
	up := strings.ToUpper(last)
	switch {
	case protocol == ProtocolIMAP && (strings.HasPrefix(up, "* OK") || strings.HasPrefix(up, "* PREAUTH")):
		return nil
	case protocol == ProtocolSMTP && (strings.HasPrefix(last, "220 ") || last == "220"):
		return nil
	}
	return &GreetingError{Protocol: protocol, Line: printable(last)}
}

// startTLS is the starttls step.
func (r *run) startTLS(ctx context.Context) (string, error) {
	caps, err := startTLS(r.raw, r.t.Protocol, r.greeting, r.srv.Host, r.dialogueLog, time.Now().Add(r.t.Timeout))
	if len(caps) > 0 {
		r.rep.Server.Capabilities = caps
	}
	if err != nil {
		return "", err
	}
	return "server ready for TLS", nil
}

// startTLS has the protocol library ask for TLS on the plaintext connection c, whose greeting (already read) is
// replayed: go-imap reads the capabilities (CAPABILITY when the greeting has none) and sends STARTTLS when they
// offer it; go-smtp sends EHLO, checks the STARTTLS extension and sends STARTTLS. The library's own TLS client is
// stopped before its first byte (libConn hands c back), and c is then ready for the caller's handshake; deadline is
// the connection's deadline meanwhile. newLog (may be nil) gives the writers of the dialogue's log. It returns the
// plaintext capabilities it saw (IMAP only: go-smtp does not list them). A server that does not offer or refuses
// STARTTLS gives a *mail.ProtocolError wrapping mail.ErrStartTLSUnavailable; other errors keep the type the
// connection saw.
func startTLS(c net.Conn, protocol string, greeting []byte, host string, newLog func() (io.Writer, io.Writer),
	deadline time.Time) ([]string, error) {
	// never used for a handshake: libConn refuses the library's ClientHello
	placeholder := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if protocol == ProtocolSMTP {
		lc := &libConn{Conn: c, replay: greeting, plaintext: true, logReplay: true}
		lc.setLog(newLog)
		_, err := smtp.NewClientStartTLS(lc, placeholder)
		lc.handOver() // go-smtp has no goroutine: its client is simply dropped
		if err != nil {
			return nil, lc.explain(mail.StartTLSRefused(err))
		}
		return nil, nil
	}
	caps, err := imapCaps(c, greeting, newLog, deadline)
	if err != nil {
		return caps, err
	}
	if !slices.Contains(caps, "STARTTLS") {
		return caps, &mail.ProtocolError{Step: StepStartTLS, Response: "CAPABILITY " + strings.Join(caps, " "),
			Err: mail.ErrStartTLSUnavailable}
	}
	lc := &libConn{Conn: c, replay: []byte(imapResumed), plaintext: true} // the greeting is behind us: a stand-in
	lc.setLog(newLog)
	ic, err := imapclient.NewStartTLS(lc, &imapclient.Options{TLSConfig: placeholder})
	if ic != nil {
		ic.Close()
	}
	switch {
	case lc.handedAtTLS():
		return caps, nil
	case err == nil:
		err = errors.New("STARTTLS: no TLS handshake started")
	}
	return caps, lc.explain(mail.StartTLSRefused(err))
}

// imapCaps reads the plaintext capabilities with a go-imap client on c (the greeting replayed), then takes c back
// from it: its reader goroutine is stopped by a read deadline in the past, and c gets deadline again.
func imapCaps(c net.Conn, greeting []byte, newLog func() (io.Writer, io.Writer), deadline time.Time) ([]string, error) {
	lc := &libConn{Conn: c, replay: greeting, logReplay: true}
	lc.setLog(newLog)
	ic := imapclient.New(lc, nil)
	set := ic.Caps()
	var err error
	if set == nil {
		_, err = ic.Capability().Wait()
		if err == nil {
			err = errors.New("no capabilities")
		}
		err = lc.explain(err)
	}
	lc.handOver()
	_ = c.SetReadDeadline(time.Now())
	_ = ic.Close()
	_ = c.SetDeadline(deadline)
	caps := make([]string, 0, len(set))
	for k := range set {
		caps = append(caps, string(k))
	}
	slices.Sort(caps)
	return caps, err
}

// errHandedOver ends the protocol library's use of a connection the ladder took back.
var errHandedOver = errors.New("connection handed back to the diagnosis ladder")

// libConn is a connection as go-imap or go-smtp sees it. The libraries flatten read errors into text and set
// deadlines of their own; libConn keeps the first read or write error with its type (for Classify), keeps the
// first line the server sent (the greeting), ignores the libraries' deadlines (the ladder sets one per step), and
// can be handed back to the ladder: on a plaintext connection, the library's first TLS byte (a ClientHello after
// STARTTLS) is refused and from then on nothing reaches the connection. replay is read before the connection's own
// bytes (logged when logReplay is set: a greeting the ladder read, not a stand-in), and writes wait until it has
// been read (go-imap sends its first command without waiting for the greeting).
//
// libConn writes the protocol log, one writer per direction (mail.NewDialogueLog): what the library sends is
// logged before it is sent and what it receives as it arrives, so the log shows the dialogue in order, and
// pipelined commands cannot mix with answers. (The libraries' DebugWriter gets both directions in one stream, the
// client's bytes after they left: answers came first in the log.) Safe for concurrent use (go-imap reads and writes
// from two goroutines).
type libConn struct {
	net.Conn
	plaintext      bool
	logReplay      bool
	sent, received io.Writer // the protocol log; nil: none

	mu        sync.Mutex
	replayed  *sync.Cond // signalled when replay is empty
	replay    []byte
	err       error  // the first read or write error
	first     []byte // the first line read, up to maxGreeting bytes
	firstDone bool
	handed    bool // handed back: the library gets errHandedOver
	atTLS     bool // handed back because the library started TLS
}

func (c *libConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.handed {
		c.mu.Unlock()
		return 0, errHandedOver
	}
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		c.noteRead(p[:n], c.logReplay)
		if len(c.replay) == 0 && c.replayed != nil {
			c.replayed.Broadcast()
		}
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handed { // taken back while the library waited: what arrived is not the library's any more
		return 0, errHandedOver
	}
	c.noteRead(p[:n], true)
	c.noteErr(err)
	return n, err
}

// setLog gives the connection the writers of its protocol log (newLog nil: none).
func (c *libConn) setLog(newLog func() (io.Writer, io.Writer)) {
	if newLog != nil {
		c.sent, c.received = newLog()
	}
}

// noteRead records the first line and logs b; c.mu is held.
func (c *libConn) noteRead(b []byte, log bool) {
	if !c.firstDone {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			c.first, c.firstDone = append(c.first, b[:i]...), true
		} else if c.first = append(c.first, b...); len(c.first) > maxGreeting {
			c.firstDone = true
		}
	}
	if log && c.received != nil && len(b) > 0 {
		_, _ = c.received.Write(b)
	}
}

// noteErr keeps the first error; c.mu is held.
func (c *libConn) noteErr(err error) {
	if err != nil && c.err == nil && !errors.Is(err, errHandedOver) {
		c.err = err
	}
}

func (c *libConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.replay) > 0 && c.replayed == nil {
		c.replayed = sync.NewCond(&c.mu)
	}
	for len(c.replay) > 0 && !c.handed {
		c.replayed.Wait()
	}
	if c.handed {
		c.mu.Unlock()
		return 0, errHandedOver
	}
	if c.plaintext && len(p) >= 2 && p[0] == 0x16 && p[1] == 0x03 { // a TLS handshake record: the library's TLS begins
		c.handed, c.atTLS = true, true
		c.mu.Unlock()
		return 0, errHandedOver
	}
	if c.sent != nil {
		_, _ = c.sent.Write(p) // before the server can answer it
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteErr(err)
	return n, err
}

// Close closes the connection, unless it was handed back (the ladder owns it then).
func (c *libConn) Close() error {
	c.mu.Lock()
	handed := c.handed
	c.mu.Unlock()
	if handed {
		return nil
	}
	return c.Conn.Close()
}

// The ladder sets the deadlines.
func (c *libConn) SetDeadline(time.Time) error      { return nil }
func (c *libConn) SetReadDeadline(time.Time) error  { return nil }
func (c *libConn) SetWriteDeadline(time.Time) error { return nil }

// handOver takes the connection back from the library.
func (c *libConn) handOver() {
	c.mu.Lock()
	c.handed = true
	if c.replayed != nil {
		c.replayed.Broadcast()
	}
	c.mu.Unlock()
}

// handedAtTLS reports whether the library started TLS (and was stopped there).
func (c *libConn) handedAtTLS() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.atTLS
}

// firstLine returns the first line the server sent and whether it is complete.
func (c *libConn) firstLine() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimRight(string(c.first), "\r"), c.firstDone && len(c.first) <= maxGreeting
}

// explain returns err with the typed error the connection saw, when the library kept only its text.
func (c *libConn) explain(err error) error {
	c.mu.Lock()
	werr := c.err
	c.mu.Unlock()
	if err == nil || werr == nil || errors.Is(err, werr) {
		return err
	}
	return fmt.Errorf("%w: %w", err, werr)
}
