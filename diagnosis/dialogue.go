package diagnosis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/mail"
)

// dialogue is the protocol part of the ladder, spoken by go-imap or go-smtp on the ladder's TLS connection with
// package mail's login, listing and sending.
type dialogue interface {
	// open starts the protocol client on the TLS connection. After STARTTLS the server sends no second greeting;
	// the client is given a stand-in that the log does not show.
	open(tc *tls.Conn, afterSTARTTLS bool)
	greeting(ctx context.Context) (string, error) // implicit TLS: the greeting step
	auth(ctx context.Context) (string, error)     // the auth step: capabilities, then the login
	finish(ctx context.Context) (string, error)   // the list (IMAP) or send (SMTP) step, then logout
	close()
}

// Stand-in greetings after STARTTLS (RFC 9051 section 6.2.1, RFC 3207 section 4.2: the server does not greet again).
const (
	imapResumed = "* OK TLS established\r\n"
	smtpResumed = "220 TLS established\r\n"
)

// ehloName is the name the ladder gives in EHLO.
const ehloName = "cardmail.localhost"

// dialogueLog returns the writers of a new dialogue's protocol log (package mail's policy) for the run's protocol.
func (r *run) dialogueLog() (sent, received io.Writer) {
	return mail.NewDialogueLog(r.t.Protocol, r.log.add, r.secrets()...)
}

// libConnFor wraps the TLS connection for the protocol library, with the stand-in greeting after STARTTLS (not
// logged: the server sent none).
func (r *run) libConnFor(tc *tls.Conn, afterSTARTTLS bool, resumed string) *libConn {
	lc := &libConn{Conn: tc}
	lc.setLog(r.dialogueLog)
	if afterSTARTTLS {
		lc.replay = []byte(resumed)
		lc.first, lc.firstDone = nil, true // the greeting was the plaintext one
	}
	return lc
}

// greetingFailure turns a failed greeting into *GreetingError: the line the server sent when it sent one (not a
// greeting of the protocol), else the connection's error (timeout, hang-up, TLS alert).
func greetingFailure(protocol string, lc *libConn, err error) error {
	line, complete := lc.firstLine()
	if complete {
		return &GreetingError{Protocol: protocol, Line: printable(line), Err: err}
	}
	err = lc.explain(err)
	return &GreetingError{Protocol: protocol, Timeout: isTimeout(err), Err: err}
}

// conversation is what both dialogues hold: the run, and the connection lent to the library.
type conversation struct {
	r  *run
	lc *libConn
}

// errorOf returns a client error with its type (see libConn.explain) and card cause (session.Record.Explain).
func (v *conversation) errorOf(err error) error { return v.r.rec.Explain(v.lc.explain(err)) }

// imapDialogue speaks IMAP with go-imap.
type imapDialogue struct {
	conversation
	c *imapclient.Client
}

func (d *imapDialogue) open(tc *tls.Conn, afterSTARTTLS bool) {
	d.lc = d.r.libConnFor(tc, afterSTARTTLS, imapResumed)
	d.c = imapclient.New(d.lc, nil)
}

func (d *imapDialogue) greeting(context.Context) (string, error) {
	if err := d.c.WaitGreeting(); err != nil {
		return "", greetingFailure(ProtocolIMAP, d.lc, d.errorOf(err))
	}
	line, _ := d.lc.firstLine()
	d.r.rep.Server.Greeting = printable(line)
	return printable(line), nil
}

func (d *imapDialogue) auth(context.Context) (string, error) {
	if err := d.c.WaitGreeting(); err != nil { // after STARTTLS: the stand-in, at once
		return "", d.errorOf(err)
	}
	d.setCaps() // after STARTTLS go-imap asks again (RFC 9051 section 6.2.1); LoginIMAP reports a failure
	mech, err := mail.LoginIMAP(d.c, d.r.t.Account)
	if err != nil {
		return "", d.errorOf(err)
	}
	d.setCaps()
	return mech + " accepted", nil
}

func (d *imapDialogue) setCaps() {
	var caps []string
	for c := range d.c.Caps() {
		caps = append(caps, string(c))
	}
	if len(caps) > 0 {
		slices.Sort(caps)
		d.r.rep.Server.Capabilities = caps
	}
}

// finish is the list step: every folder with its counts (mail.ListFolders), reported as counts only.
func (d *imapDialogue) finish(context.Context) (string, error) {
	folders, err := mail.ListFolders(d.c, true)
	if err != nil {
		return "", d.errorOf(err)
	}
	var messages, unseen uint64
	for _, f := range folders {
		messages += uint64(f.Messages)
		unseen += uint64(f.Unseen)
	}
	_ = d.c.Logout().Wait()
	return fmt.Sprintf("%d folders, %d messages, %d unseen", len(folders), messages, unseen), nil
}

// close closes the client (its reader goroutine ends with the connection run.close closed).
func (d *imapDialogue) close() {
	if d.c != nil {
		_ = d.c.Close()
	}
}

// smtpDialogue speaks SMTP submission with go-smtp.
type smtpDialogue struct {
	conversation
	c             *smtp.Client
	afterSTARTTLS bool
}

func (d *smtpDialogue) open(tc *tls.Conn, afterSTARTTLS bool) {
	d.lc, d.afterSTARTTLS = d.r.libConnFor(tc, afterSTARTTLS, smtpResumed), afterSTARTTLS
	d.c = smtp.NewClient(d.lc)
}

// greeting is the greeting step of implicit TLS: the greeting and the answer to EHLO (go-smtp reads both in Hello).
func (d *smtpDialogue) greeting(context.Context) (string, error) {
	err := d.c.Hello(ehloName)
	line, complete := d.lc.firstLine()
	switch {
	case err != nil && (!complete || !strings.HasPrefix(line, "220")):
		return "", greetingFailure(ProtocolSMTP, d.lc, d.errorOf(err))
	case err != nil:
		return "", d.errorOf(smtpRefusal(StepGreeting, err))
	}
	d.r.rep.Server.Greeting = printable(line)
	d.setCaps()
	return printable(line), nil
}

func (d *smtpDialogue) auth(context.Context) (string, error) {
	if d.afterSTARTTLS { // EHLO again over TLS (RFC 3207 section 4.2)
		if err := d.c.Hello(ehloName); err != nil {
			return "", d.errorOf(smtpRefusal(StepAuth, err))
		}
		d.setCaps()
	}
	mech, err := mail.LoginSMTP(d.c, d.r.t.Account)
	if err != nil {
		return "", d.errorOf(err)
	}
	return mech + " accepted", nil
}

// smtpRefusal makes a server's refusal of EHLO a *mail.ProtocolError; other errors (a hang-up, a timeout) keep their
// type for the classifier.
func smtpRefusal(step string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &mail.ProtocolError{Step: step, Response: fmt.Sprintf("EHLO: %d %s", se.Code, se.Message), Err: se}
	}
	return err
}

// smtpExtensions are the EHLO keywords the report lists (go-smtp answers for a keyword, it does not list them).
var smtpExtensions = []string{"8BITMIME", "AUTH", "BINARYMIME", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "PIPELINING",
	"REQUIRETLS", "SIZE", "SMTPUTF8", "STARTTLS"}

func (d *smtpDialogue) setCaps() {
	var caps []string
	for _, k := range smtpExtensions {
		ok, param := d.c.Extension(k)
		switch {
		case !ok:
		case k == "AUTH":
			for _, m := range strings.Fields(param) {
				caps = append(caps, "AUTH="+strings.ToUpper(m))
			}
		default:
			caps = append(caps, k)
		}
	}
	d.r.rep.Server.Capabilities = caps
}

// finish is the send step: the test message of package mail to Target.SendTo, or with no recipient only the
// sender's acceptance (MAIL FROM, RSET). The detail names no address.
func (d *smtpDialogue) finish(context.Context) (string, error) {
	from, to := d.r.t.Account.Address, d.r.t.SendTo
	if strings.ContainsAny(from+to, "\r\n<>") {
		return "", fmt.Errorf("%w: address with a line break or angle bracket", ErrBadTarget)
	}
	if to == "" {
		if err := mail.Submit(d.c, from, nil, nil); err != nil {
			return "", d.errorOf(err)
		}
		_ = d.c.Quit()
		return "sender accepted, no recipient: nothing sent", nil
	}
	raw, _, err := mail.BuildTestMessage(from, to, time.Now(), "")
	if err != nil {
		return "", err
	}
	if err := mail.Submit(d.c, from, []string{to}, raw); err != nil {
		return "", d.errorOf(err)
	}
	_ = d.c.Quit()
	return fmt.Sprintf("test message accepted for 1 recipient (%d bytes)", len(raw)), nil
}

func (d *smtpDialogue) close() {
	if d.c != nil {
		_ = d.c.Close()
	}
}
