package bridge

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
)

// smtpQuitTimeout bounds the upstream QUIT when a local client leaves.
const smtpQuitTimeout = 5 * time.Second

func (b *Bridge) newSMTPServer() *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{b: b, c: c, client: c.Conn().RemoteAddr().String()}, nil
	}))
	s.Domain = "localhost"
	s.AllowInsecureAuth = true // loopback: plaintext login is allowed for clients that cannot do STARTTLS
	s.TLSConfig = b.cfg.TLS
	s.ReadTimeout = b.cfg.IdleTimeout // per command; DATA extends it while bytes arrive (progressReader)
	s.WriteTimeout = time.Minute
	s.MaxMessageBytes = 0 // the upstream server's limit applies: it answers DATA itself
	s.ErrorLog = discardLogger{}
	return s
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// smtpSession relays one local client's SMTP session: login with the bridge password, then each transaction to
// an upstream connection logged in with the card. go-smtp calls its methods one at a time.
type smtpSession struct {
	b      *Bridge
	c      *smtp.Conn
	client string

	authed   bool
	up       *mail.SMTPConn
	untrack  func()
	inTx     bool
	cardGone atomic.Bool
}

// AuthMechanisms offers PLAIN (Thunderbird, most clients) and LOGIN (Outlook).
func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

// Auth implements smtp.AuthSession.
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && !strings.EqualFold(identity, user) {
				return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authorization identity not allowed"}
			}
			return s.login(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{auth: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks the bridge password and logs in upstream with the card: a refusal for the card is temporary (454).
func (s *smtpSession) login(user, pass string) error {
	if !s.b.gate.check(s.b.ctx, user, pass) {
		s.b.emit(Event{Kind: LoginRefused, Protocol: "smtp", Client: s.client, Code: diagnosis.AuthFailed, Err: errBadPassword})
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: s.b.text("bridge.wire.wrong_password", nil)}
	}
	if err := s.dial(); err != nil {
		return err
	}
	s.authed = true
	s.b.setRelayed(1)
	s.b.emit(Event{Kind: ClientLoggedIn, Protocol: "smtp", Client: s.client})
	return nil
}

// dial makes the upstream connection; a failure is a 454 (RFC 4954: temporary authentication failure) with the
// reason in words.
func (s *smtpSession) dial() error {
	up, code := upstreamLogin(s.b, "smtp", s.client, s.b.cfg.Dialer.SMTP)
	if code != diagnosis.OK {
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: s.b.codeText(code)}
	}
	s.b.pinIdentity(up.Identity())
	s.up = up
	local := s.c.Conn()
	s.untrack = up.Identity().Track(closerFunc(func() error {
		// The card left: the local connection goes too, at once, whatever it was doing. A message in DATA was not
		// accepted (no 250 was sent), so the client keeps it and sends it again later.
		s.cardGone.Store(true)
		_ = local.SetDeadline(time.Now().Add(time.Second))
		return local.Close()
	}))
	return nil
}

// drop closes the upstream connection (after an error, or when the client leaves).
func (s *smtpSession) drop() {
	if s.untrack != nil {
		s.untrack()
		s.untrack = nil
	}
	if s.up != nil {
		s.up.Close()
		s.up = nil
	}
	s.inTx = false
}

var errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

// Mail starts a transaction upstream, reconnecting once when a kept connection turns out dead (idle timeout of
// the server).
func (s *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	if !s.authed {
		return errAuthRequired
	}
	fresh := false
	if s.up == nil {
		if err := s.dial(); err != nil {
			return err
		}
		fresh = true
	}
	err := s.up.Client.Mail(from, opts)
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) && !fresh && !s.cardGone.Load() && s.up.Identity().Current() {
		s.drop()
		if derr := s.dial(); derr != nil {
			return derr
		}
		err = s.up.Client.Mail(from, opts)
	}
	if err == nil {
		s.inTx = true
	}
	return s.relayErr(err)
}

// Rcpt relays a recipient; the upstream's answer is the client's.
func (s *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.authed {
		return errAuthRequired
	}
	if s.up == nil {
		return s.lost(errors.New("no upstream connection"))
	}
	return s.relayErr(s.up.Client.Rcpt(to, opts))
}

// Data streams the message to the upstream server and answers with the upstream's own reply to the end of data:
// the client hears "250" only when the server accepted the message. A message cut short by the client is never
// completed upstream (the upstream connection is closed instead of sending the final dot).
func (s *smtpSession) Data(r io.Reader) error {
	defer func() { s.inTx = false }()
	if s.up == nil {
		_, _ = io.Copy(io.Discard, r)
		return s.lost(errors.New("no upstream connection"))
	}
	w, err := s.up.Client.Data()
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		return s.relayErr(err)
	}
	up := s.up
	watch := newStallWatch(s.b.cfg.Dialer.Timeout, func() { up.Close() })
	defer watch.stop()
	src := &progressReader{r: r, conn: s.c.Conn(), timeout: s.b.cfg.IdleTimeout}
	dst := &recordWriter{w: w, watch: watch}
	if _, err := io.Copy(dst, src); err != nil {
		if src.err != nil {
			// The client stopped sending: drop the half-sent message upstream.
			s.drop()
			return src.err
		}
		_, _ = io.Copy(io.Discard, r)
		return s.lost(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return s.relayErr(err)
	}
	code, text := enhanced(resp.StatusText)
	return &smtp.SMTPError{Code: 250, EnhancedCode: code, Message: text} // go-smtp sends this as the 250 reply
}

// Reset ends the transaction upstream too.
func (s *smtpSession) Reset() {
	if s.up != nil && s.inTx {
		if err := s.up.Client.Reset(); err != nil {
			s.drop()
		}
	}
	s.inTx = false
}

// Logout closes the upstream connection (QUIT) when the client leaves.
func (s *smtpSession) Logout() error {
	if s.up != nil && !s.cardGone.Load() {
		ctx, cancel := context.WithTimeout(s.b.ctx, smtpQuitTimeout)
		_ = s.up.Quit(ctx)
		cancel()
	}
	s.drop()
	if s.authed {
		s.authed = false
		s.b.setRelayed(-1)
	}
	return nil
}

// relayErr passes the upstream server's reply on as it is; a connection failure becomes a temporary 451.
func (s *smtpSession) relayErr(err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return s.lost(err)
}

// lost reports a lost upstream connection and answers 451: the client keeps its message and tries again.
func (s *smtpSession) lost(err error) error {
	code := classify(err)
	if s.cardGone.Load() || (s.up != nil && !s.up.Identity().Current()) {
		code = diagnosis.CardRemoved
	}
	s.drop()
	s.b.emit(Event{Kind: UpstreamError, Protocol: "smtp", Client: s.client, Code: code, Err: err})
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: s.b.codeText(code)}
}

// enhanced splits "2.0.0 Ok: queued as X" into its enhanced status code and text.
func enhanced(text string) (smtp.EnhancedCode, string) {
	code := smtp.EnhancedCode{2, 0, 0}
	head, rest, ok := strings.Cut(text, " ")
	parts := strings.Split(head, ".")
	if !ok || len(parts) != 3 {
		return code, text
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{2, 0, 0}, text
		}
		code[i] = n
	}
	return code, rest
}

// loginServer is SASL LOGIN (draft-murchison-sasl-login), which go-sasl does not serve: user name, then password,
// each after a challenge, or the user name as an initial response.
type loginServer struct {
	step int
	user string
	auth func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if len(resp) > 0 {
			l.user, l.step = string(resp), 2
			return []byte("Password:"), false, nil
		}
		l.step = 1
		return []byte("Username:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// progressReader extends the local connection's read deadline while message bytes arrive, and keeps the read
// error apart from the upstream's write errors.
type progressReader struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
	err     error
}

func (p *progressReader) Read(b []byte) (int, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(p.timeout))
	n, err := p.r.Read(b)
	if err != nil && err != io.EOF {
		p.err = err
	}
	return n, err
}

// recordWriter feeds the stall watch on every write to the upstream.
type recordWriter struct {
	w     io.Writer
	watch *stallWatch
}

func (r *recordWriter) Write(b []byte) (int, error) {
	r.watch.progress()
	return r.w.Write(b)
}

// stallWatch calls fire when no progress was reported for d (an upstream server that stopped reading mid-DATA
// would otherwise hold the client forever).
type stallWatch struct {
	mu sync.Mutex
	t  *time.Timer
	d  time.Duration
}

func newStallWatch(d time.Duration, fire func()) *stallWatch {
	if d <= 0 {
		d = mail.DefaultTimeout
	}
	return &stallWatch{t: time.AfterFunc(d, fire), d: d}
}

func (w *stallWatch) progress() {
	w.mu.Lock()
	w.t.Reset(w.d)
	w.mu.Unlock()
}

func (w *stallWatch) stop() {
	w.mu.Lock()
	w.t.Stop()
	w.mu.Unlock()
}
