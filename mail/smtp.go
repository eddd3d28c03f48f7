package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"sync"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/session"
)

// TestSubject is the subject of SendTest's message (a fixed technical marker, also used to find it again).
const TestSubject = "CardMail test message"

// Sent describes the message SendTest built, sent or not.
type Sent struct {
	MessageID string // without angle brackets
	From      string
	To        []string
	Date      time.Time
	Size      int
	Mechanism string // the SMTP login mechanism used ("" when the send failed before the login)
}

// ErrDeliveryUnconfirmed: the whole message went to the server, but the connection failed before the server
// answered it (RFC 5321 §4.1.1.4: the reply to the final "." is what accepts a message). The server may have
// accepted it: the person must look for it before sending another, or get it twice.
var ErrDeliveryUnconfirmed = errors.New("mail: the server did not confirm the message it received (it may still arrive)")

// SendTest sends a small text message from a.Address to to by SMTP submission with the card (From/To the addresses,
// Date, Message-ID, subject TestSubject). It is a test: a message that fails is not kept and never sent again
// later; the error says what failed, and the returned *Sent (non-nil once the message was built) describes it.
// Errors are *StepError wrapping the typed cause; a connection lost after the message's final "." also wraps
// ErrDeliveryUnconfirmed.
func (d *Dialer) SendTest(ctx context.Context, a Account, to string) (*Sent, error) {
	if err := a.check(a.SMTP); err != nil {
		return nil, err
	}
	if err := checkAddress("Address", a.Address); err != nil {
		return nil, err
	}
	if err := checkAddress("to", to); err != nil {
		return nil, err
	}
	msg, err := newTestMessage(a.Address, to, time.Now(), d.TestBody)
	if err != nil {
		return nil, err
	}
	sent := &Sent{MessageID: msg.MessageID, From: msg.From, To: msg.To, Date: msg.Date, Size: len(msg.Raw)}
	mech, err := d.submit(ctx, a, msg.From, msg.To, msg.Raw)
	sent.Mechanism = mech
	return sent, err
}

func checkAddress(field, addr string) error {
	if addr == "" || strings.ContainsAny(addr, "\r\n<>") {
		return &ConfigError{Field: field, Value: addr}
	}
	if _, err := netmail.ParseAddress(addr); err != nil {
		return &ConfigError{Field: field, Value: addr}
	}
	return nil
}

// testMessage is a message ready to submit.
type testMessage struct {
	MessageID string
	From      string
	To        []string
	Date      time.Time
	Raw       []byte
}

// BuildTestMessage returns SendTest's message from from to to (see newTestMessage) and its Message-ID, for a
// client the caller connected (the diagnosis ladder's send step).
func BuildTestMessage(from, to string, now time.Time, body string) (raw []byte, messageID string, err error) {
	m, err := newTestMessage(from, to, now, body)
	if err != nil {
		return nil, "", err
	}
	return m.Raw, m.MessageID, nil
}

// newTestMessage builds SendTest's RFC 5322 message (CRLF line ends, 7-bit headers, UTF-8 body).
func newTestMessage(from, to string, now time.Time, body string) (*testMessage, error) {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	domain := "cardmail.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i+1 < len(from) {
		domain = from[i+1:]
	}
	id := hex.EncodeToString(rnd[:]) + "@" + domain
	if body == "" {
		body = "cardmail-test " + id
	}
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	now = now.Truncate(time.Second)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Subject: %s\r\n", TestSubject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s>\r\n", id)
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	b.WriteString("X-Mailer: CardMail\r\n\r\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, "\r\n") {
		b.WriteString("\r\n")
	}
	return &testMessage{MessageID: id, From: from, To: []string{to}, Date: now, Raw: b.Bytes()}, nil
}

// SMTPConn is an SMTP submission connection made with the card and logged in, for a caller that drives the mail
// transactions itself (the bridge relays a local client's MAIL, RCPT and DATA over it). Client's commands have
// Dialer.Timeout each (the final reply to DATA twice that). The session manager closes the connection when the card
// generation it was made with ends; Close releases it.
type SMTPConn struct {
	Client    *smtp.Client
	Mechanism string // "EXTERNAL", "LOGIN" or "PLAIN"

	cn      *conn
	untrack func()
	once    sync.Once
}

// Identity returns the card identity the connection was made with.
func (c *SMTPConn) Identity() *session.Identity { return c.cn.id }

// Quit says QUIT (bounded by the step timeout and ctx) and closes the connection.
func (c *SMTPConn) Quit(ctx context.Context) error {
	err := c.cn.step(ctx, "quit", c.Client.Quit)
	c.Close()
	return err
}

// Close closes the connection at once, without QUIT. Safe to call more than once, and after the manager closed it.
func (c *SMTPConn) Close() error {
	c.once.Do(func() {
		if c.untrack != nil {
			c.untrack()
		}
		_ = c.cn.raw.Close()
	})
	return nil
}

// SMTP connects to a.SMTP, makes the TLS handshake with the card and logs in (see Auth). The connection is tracked
// by its card's session manager. Like IMAP, a failed resumption is retried once with a full handshake. Errors are *StepError
// wrapping the typed cause.
func (d *Dialer) SMTP(ctx context.Context, a Account) (*SMTPConn, error) {
	if err := a.check(a.SMTP); err != nil {
		return nil, err
	}
	var sc *SMTPConn
	err := d.retryResumption(ctx, func(cn *conn) (err error) {
		sc, _, err = d.smtpOnce(ctx, a, cn)
		return err
	})
	return sc, err
}

// smtpOnce is one connection attempt of SMTP; it also returns the login mechanism when the login was refused.
func (d *Dialer) smtpOnce(ctx context.Context, a Account, cn *conn) (*SMTPConn, string, error) {
	tr := cn.tr
	cfg, err := d.open(ctx, a, a.SMTP, cn)
	if err != nil {
		return nil, "", err
	}
	ok := false
	defer func() {
		if !ok {
			cn.raw.Close()
		}
	}()
	var c *smtp.Client
	setup := func(c *smtp.Client) {
		c.CommandTimeout = d.timeout()
		c.SubmissionTimeout = 2 * d.timeout()
		if tr.Log != nil {
			c.DebugWriter = NewLogWriter(ProtoSMTP, tr.Log, a.Password)
		}
	}
	switch a.SMTP.Security {
	case profile.Implicit:
		tc, err := cn.handshake(ctx, cfg)
		if err != nil {
			return nil, "", err
		}
		c = smtp.NewClient(tc)
		setup(c)
		if err := cn.step(ctx, StepGreeting, func() error { return smtpErr(StepGreeting, cn.rec.Explain(c.Hello("localhost"))) }); err != nil {
			return nil, "", err
		}
	case profile.StartTLS:
		err := cn.step(ctx, StepStartTLS, func() error {
			var err error
			c, err = smtp.NewClientStartTLS(cn.raw, cfg)
			if err != nil {
				// greeting, EHLO and the check happen inside NewClientStartTLS
				if refused := StartTLSRefused(err); refused != err {
					return refused
				}
				return smtpErr(StepStartTLS, err)
			}
			setup(c)
			return nil
		})
		if err != nil {
			return nil, "", err
		}
		// The handshake happens with the EHLO that follows STARTTLS.
		err = cn.step(ctx, StepTLS, func() error { return cn.rec.Explain(c.Hello("localhost")) })
		if err != nil {
			if _, verified := cn.tlsState(); verified && !isTLSError(err) {
				err.(*StepError).Step = StepGreeting
			}
			return nil, "", err
		}
	}
	var mech string
	if err := cn.step(ctx, StepAuth, func() error {
		var err error
		mech, err = LoginSMTP(c, a)
		return cn.rec.Explain(err)
	}); err != nil {
		c.Close()
		return nil, mech, err
	}
	sc := &SMTPConn{Client: c, Mechanism: mech, cn: cn}
	sc.untrack = cn.id.Track(cn.raw)
	ok = true
	return sc, mech, nil
}

// submit sends raw by SMTP submission with the card, returning the login mechanism used.
// Like IMAP, a failed resumption is retried once with a full handshake; nothing is retried once the envelope was
// sent.
func (d *Dialer) submit(ctx context.Context, a Account, from string, to []string, raw []byte) (mech string, err error) {
	err = d.retryResumption(ctx, func(cn *conn) (err error) {
		mech, err = d.submitOnce(ctx, a, cn, from, to, raw)
		return err
	})
	return mech, err
}

// submitOnce is one connection attempt of submit.
func (d *Dialer) submitOnce(ctx context.Context, a Account, cn *conn, from string, to []string, raw []byte) (string, error) {
	sc, mech, err := d.smtpOnce(ctx, a, cn)
	if err != nil {
		return mech, err
	}
	err = cn.step(ctx, StepSend, func() error { return Submit(sc.Client, from, to, raw) })
	if err != nil {
		sc.Close()
		return mech, err
	}
	_ = sc.Quit(ctx)
	return mech, nil
}

// Submit sends raw from from to every address of to on the logged-in client c (MAIL FROM, RCPT TO, DATA). With no
// recipient it only has the server accept the sender (MAIL FROM, then RSET) and sends nothing. A refusal is
// *ProtocolError at StepSend; a connection lost after the whole message went out is ErrDeliveryUnconfirmed.
func Submit(c *smtp.Client, from string, to []string, raw []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return smtpErr(StepSend, err)
	}
	if len(to) == 0 {
		return smtpErr(StepSend, c.Reset())
	}
	for _, rc := range to {
		if err := c.Rcpt(rc, nil); err != nil {
			return smtpErr(StepSend, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr(StepSend, err)
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// The final "." may have reached the server: only its reply, lost here, would say.
			return fmt.Errorf("%w: %w", ErrDeliveryUnconfirmed, err)
		}
		return smtpErr(StepSend, err)
	}
	return nil
}

// LoginSMTP logs in on c per a.Auth (SASL EXTERNAL, LOGIN or PLAIN, chosen by chooseMechanism like LoginIMAP) and
// returns the mechanism used. A refusal is *AuthError (its Response never holds the password).
func LoginSMTP(c *smtp.Client, a Account) (string, error) {
	offered := map[string]bool{}
	for _, m := range []string{"EXTERNAL", "LOGIN", "PLAIN"} {
		offered[m] = c.SupportsAuth(m)
	}
	mech, err := chooseMechanism(a.auth(), offered, false)
	if err != nil {
		return "", err
	}
	var sc sasl.Client
	switch mech {
	case "EXTERNAL":
		sc = sasl.NewExternalClient("")
	case "LOGIN":
		sc = &loginClient{user: a.Address, pass: a.Password}
	case "PLAIN":
		sc = sasl.NewPlainClient("", a.Address, a.Password)
	}
	if err := c.Auth(sc); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return mech, &AuthError{Mechanism: mech, Response: Redact(smtpText(se), a.Password), Err: se}
		}
		return mech, err
	}
	return mech, nil
}

func smtpText(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

// smtpErr wraps a server refusal as *ProtocolError; other errors pass unchanged.
func smtpErr(step string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &ProtocolError{Step: step, Response: smtpText(se), Err: se}
	}
	return err
}

// loginClient is SASL LOGIN without an initial response: the user name answers the first challenge ("Username:"),
// the password the second ("Password:"). go-sasl's LOGIN client sends the user name as an initial response, which
// Dovecot's submission service ignores when it takes the user name from the client certificate.
type loginClient struct {
	user, pass string
	step       int
}

func (l *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (l *loginClient) Next(challenge []byte) ([]byte, error) {
	l.step++
	switch {
	case strings.HasPrefix(strings.ToLower(string(challenge)), "user"):
		return []byte(l.user), nil
	case strings.HasPrefix(strings.ToLower(string(challenge)), "pass"):
		return []byte(l.pass), nil
	case l.step == 1:
		return []byte(l.user), nil
	case l.step == 2:
		return []byte(l.pass), nil
	}
	return nil, sasl.ErrUnexpectedServerChallenge
}
