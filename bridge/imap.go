package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
)

// errBadPassword is the detail of a login_refused event for a wrong user name or bridge password.
var errBadPassword = errors.New("wrong user name or bridge password")

func (b *Bridge) acceptIMAP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		lc := b.open(c, "imap")
		if lc == nil {
			continue
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer lc.Close()
			s := &imapConn{b: b, lc: lc, conn: lc}
			s.r, s.w = bufio.NewReaderSize(lc, 16<<10), bufio.NewWriterSize(lc, 32<<10)
			s.serve()
		}()
	}
}

// imapConn is one local IMAP client: the pre-authentication state is served here, then the session is relayed.
type imapConn struct {
	b    *Bridge
	lc   *localConn
	conn net.Conn // lc, or the TLS connection over it after STARTTLS
	r    *bufio.Reader
	w    *bufio.Writer
	tls  bool
	bad  int
}

func (s *imapConn) client() string { return s.lc.RemoteAddr().String() }

// send writes lines (CRLF added) and flushes.
func (s *imapConn) send(lines ...string) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.b.cfg.IdleTimeout))
	for _, l := range lines {
		s.w.WriteString(l)
		s.w.WriteString("\r\n")
	}
	return s.w.Flush()
}

// caps are the capabilities before the login.
func (s *imapConn) caps() string {
	c := "IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN"
	if s.b.cfg.TLS != nil && !s.tls {
		c += " STARTTLS"
	}
	return c
}

func (s *imapConn) serve() {
	if s.send("* OK [CAPABILITY "+s.caps()+"] CardMail Bridge ready") != nil {
		return
	}
	first := true
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.b.cfg.IdleTimeout))
		if first {
			if p, err := s.r.Peek(1); err == nil && p[0] == 0x16 {
				// A TLS ClientHello: the client is set for implicit TLS ("SSL/TLS") on this plaintext/STARTTLS port.
				s.lc.fault(diagnosis.WrongSecurityMode)
				return
			}
		}
		cmd, err := readCommand(s.r, func() error { return s.send("+ Ready for literal data") })
		if err != nil {
			var se *syntaxError
			switch {
			case errors.As(err, &se):
				if !s.badCommand(se.tag, se.msg) {
					return
				}
				continue
			case errors.Is(err, os.ErrDeadlineExceeded):
				_ = s.send("* BYE Idle timeout")
			case errors.Is(err, errLineTooLong), errors.Is(err, errLiteralTooLarge):
				_ = s.send("* BYE " + err.Error())
				s.lc.fault(diagnosis.ProtocolError)
			}
			return
		}
		if first && (strings.EqualFold(cmd.tag, "EHLO") || strings.EqualFold(cmd.tag, "HELO")) {
			// An SMTP client on the IMAP port.
			_ = s.send("* BYE " + s.b.text("bridge.wire.imap_port", map[string]any{"SMTP": s.b.SMTPAddr()}))
			s.lc.fault(diagnosis.ProtocolError)
			return
		}
		first = false
		if !s.handle(cmd) {
			return
		}
	}
}

// badCommand answers BAD; false when the client has had too many.
func (s *imapConn) badCommand(tag, msg string) bool {
	s.bad++
	if s.bad >= maxBadCommands {
		_ = s.send(tag+" BAD "+wireText(msg), "* BYE Too many invalid commands")
		s.lc.fault(diagnosis.ProtocolError)
		return false
	}
	return s.send(tag+" BAD "+wireText(msg)) == nil
}

// handle runs one pre-authentication command; false ends the connection (after LOGOUT, a relayed session, or a
// write error).
func (s *imapConn) handle(cmd *command) bool {
	tag := cmd.tag
	switch cmd.name {
	case "CAPABILITY":
		return s.send("* CAPABILITY "+s.caps(), tag+" OK CAPABILITY completed") == nil
	case "NOOP":
		return s.send(tag+" OK NOOP completed") == nil
	case "LOGOUT":
		_ = s.send("* BYE CardMail Bridge logging out", tag+" OK LOGOUT completed")
		return false
	case "ID":
		return s.send(`* ID ("name" "CardMail Bridge")`, tag+" OK ID completed") == nil
	case "STARTTLS":
		return s.startTLS(tag, len(cmd.args))
	case "LOGIN":
		if len(cmd.args) != 2 {
			return s.badCommand(tag, "LOGIN needs a user name and a password")
		}
		return s.login(tag, cmd.args[0], cmd.args[1])
	case "AUTHENTICATE":
		return s.authenticate(tag, cmd.args)
	}
	return s.badCommand(tag, "Log in first (LOGIN or AUTHENTICATE PLAIN)")
}

func (s *imapConn) startTLS(tag string, nargs int) bool {
	switch {
	case nargs != 0:
		return s.badCommand(tag, "STARTTLS takes no argument")
	case s.tls:
		return s.badCommand(tag, "TLS is already active")
	case s.b.cfg.TLS == nil:
		return s.badCommand(tag, "STARTTLS is not offered")
	case s.r.Buffered() > 0:
		// Commands pipelined after STARTTLS would be read as if protected (command injection): refuse.
		_ = s.send("* BYE Data after STARTTLS")
		s.lc.fault(diagnosis.ProtocolError)
		return false
	}
	if s.send(tag+" OK Begin TLS negotiation now") != nil {
		return false
	}
	tc := tls.Server(s.lc, s.b.cfg.TLS)
	_ = tc.SetDeadline(time.Now().Add(s.b.cfg.IdleTimeout))
	if err := tc.Handshake(); err != nil {
		s.lc.fault(diagnosis.ProtocolError)
		return false
	}
	s.conn, s.tls = tc, true
	s.r, s.w = bufio.NewReaderSize(tc, 16<<10), bufio.NewWriterSize(tc, 32<<10)
	return true
}

// authenticate runs AUTHENTICATE PLAIN (RFC 4616, with or without an initial response, RFC 4959).
func (s *imapConn) authenticate(tag string, args []string) bool {
	if len(args) == 0 || len(args) > 2 {
		return s.badCommand(tag, "AUTHENTICATE needs a mechanism")
	}
	if !strings.EqualFold(args[0], "PLAIN") {
		return s.send(tag+" NO [CANNOT] Only AUTHENTICATE PLAIN and LOGIN are offered") == nil
	}
	resp := ""
	if len(args) == 2 {
		resp = args[1]
	} else {
		if s.send("+ ") != nil {
			return false
		}
		line, err := readLimited(s.r, maxCommandLine)
		if err != nil {
			return false
		}
		resp = line
	}
	if resp == "*" {
		return s.send(tag+" BAD AUTHENTICATE cancelled") == nil
	}
	if resp == "=" {
		resp = ""
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return s.badCommand(tag, "Invalid base64 data")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || (parts[0] != "" && !strings.EqualFold(parts[0], parts[1])) {
		return s.badCommand(tag, "Invalid PLAIN response")
	}
	return s.login(tag, parts[1], parts[2])
}

// login checks the bridge password, logs in upstream with the card, and on success relays the session until it
// ends (then returns false: the connection is over).
func (s *imapConn) login(tag, user, pass string) bool {
	if !s.b.gate.check(s.b.ctx, user, pass) {
		s.b.emit(Event{Kind: LoginRefused, Protocol: "imap", Client: s.client(), Code: diagnosis.AuthFailed, Err: errBadPassword})
		return s.send(tag+" NO [AUTHENTICATIONFAILED] "+s.b.text("bridge.wire.wrong_password", nil)) == nil
	}
	up, code := upstreamLogin(s.b, "imap", s.client(), s.b.cfg.Dialer.IMAPStream)
	if code != diagnosis.OK {
		// UNAVAILABLE (RFC 5530): a temporary failure; clients retry later without asking for a new password.
		return s.send(tag+" NO [UNAVAILABLE] "+s.b.codeText(code)) == nil
	}
	s.b.pinIdentity(up.Identity())
	if s.send(tag+" OK [CAPABILITY "+strings.Join(filterCaps(up.Caps), " ")+"] Logged in through CardMail Bridge") != nil {
		up.Close()
		return false
	}
	s.b.emit(Event{Kind: ClientLoggedIn, Protocol: "imap", Client: s.client()})
	s.relay(up)
	return false
}

// relay copies the session between the local client and the upstream server until either side ends, the card
// generation ends (the session manager closes both at once) or the bridge closes. When the upstream side ends
// between two responses and the server did not say BYE itself, the client gets "* BYE [UNAVAILABLE]" with the
// reason, so that it reconnects rather than reporting a broken connection.
func (s *imapConn) relay(up *mail.IMAPStream) {
	s.b.setRelayed(1)
	defer s.b.setRelayed(-1)
	var cardGone, clientGone atomic.Bool
	untrack := up.Identity().Track(closerFunc(func() error {
		cardGone.Store(true)
		up.Close()
		_ = s.lc.SetWriteDeadline(time.Now().Add(time.Second)) // a BYE must not wait on a client that reads nothing
		return nil
	}))
	defer untrack()
	stop := context.AfterFunc(s.b.ctx, func() { up.Close() })
	defer stop()
	_ = s.conn.SetDeadline(time.Time{}) // IDLE may last 29 minutes: no idle timeout once relayed

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up.Conn, s.r)
		clientGone.Store(true)
		// The client has gone: let the server's last replies through for a moment, then stop.
		_ = up.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	}()
	rc := &responseCopier{dst: s.w, src: up.Reader}
	err := rc.run()
	if !clientGone.Load() {
		switch {
		case cardGone.Load() || !up.Identity().Current(): // either closer of the card generation may run first
			s.lc.fault(diagnosis.CardRemoved)
			if rc.atStart {
				_ = s.send("* BYE [UNAVAILABLE] " + s.b.codeText(diagnosis.CardRemoved))
			}
		case s.b.ctx.Err() != nil:
			if rc.atStart {
				_ = s.send("* BYE [UNAVAILABLE] " + s.b.text("bridge.wire.stopped", nil))
			}
		case !rc.sawBye:
			code := classify(err)
			s.lc.fault(code)
			s.b.emit(Event{Kind: UpstreamError, Protocol: "imap", Client: s.client(), Code: code,
				Err: errors.Join(errors.New("the server ended the relayed session"), err)})
			if rc.atStart {
				_ = s.send("* BYE [UNAVAILABLE] " + s.b.text("bridge.wire.server_closed", nil))
			}
		}
	}
	s.lc.Close()
	up.Close()
	<-done
}

// closerFunc adapts a func to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
