package demo

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/internal/testpki"
)

// MailServer is the demo's in-process mail service on 127.0.0.1, shaped like a health-messaging server: implicit TLS
// 1.2+ only, the demo CA's client certificate required in the handshake, login by SASL EXTERNAL (the mailbox is the
// certificate's e-mail address; LOGIN is accepted only for that same address), sample folders, and SMTP submission
// that delivers into the recipients' INBOX. It keeps mail in memory only.
type MailServer struct {
	IMAPAddr, SMTPAddr string // host:port on 127.0.0.1

	imapLn, smtpLn net.Listener
	imap           *imapserver.Server
	smtp           *smtp.Server
	mu             sync.Mutex
	users          map[string]*imapmemserver.User // by e-mail address
	observe        func(Handshake)
}

// Handshake is one TLS handshake the server accepted: when its connection was accepted (Start, before the client's
// hello: whatever the client decided, a signature or a session to resume, it decided after Start) and when it
// completed (Time), the e-mail address of the client certificate that authenticated it (for a resumed session: the
// certificate of the handshake that made the session), and whether it resumed a session.
type Handshake struct {
	Start   time.Time
	Time    time.Time
	Address string
	Resumed bool
}

// Observe makes the server call fn after every TLS handshake it accepts (from its connection goroutines; fn must be
// safe for concurrent use and must not block). Tests use it to check who really authenticated.
func (s *MailServer) Observe(fn func(Handshake)) {
	s.mu.Lock()
	s.observe = fn
	s.mu.Unlock()
}

// ErrNoCardCertificate is returned to a client that logs in without a card certificate the server knows.
var ErrNoCardCertificate = errors.New("demo mail server: no valid card certificate")

// StartMailServer starts the demo mail service for ids (each gets a mailbox at its certificate's first e-mail
// address), with a server certificate from pki. Close stops it.
func StartMailServer(pki *testpki.PKI, ids ...*testpki.Identity) (*MailServer, error) {
	srvID, err := pki.ServerCert("127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("demo mail server: %w", err)
	}
	cert, err := tls.X509KeyPair(srvID.CertPEM, srvID.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("demo mail server: %w", err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(pki.CA)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: clients, MinVersion: tls.VersionTLS12}

	s := &MailServer{users: map[string]*imapmemserver.User{}}
	for _, id := range ids {
		if len(id.Cert.EmailAddresses) == 0 {
			continue
		}
		addr := strings.ToLower(id.Cert.EmailAddresses[0])
		u := imapmemserver.NewUser(addr, "")
		if err := fillSampleMailbox(u, id.Name, addr); err != nil {
			return nil, err
		}
		s.users[addr] = u
	}

	if s.imapLn, err = s.listen(cfg); err != nil {
		return nil, fmt.Errorf("demo mail server: %w", err)
	}
	if s.smtpLn, err = s.listen(cfg); err != nil {
		s.imapLn.Close()
		return nil, fmt.Errorf("demo mail server: %w", err)
	}
	s.IMAPAddr, s.SMTPAddr = s.imapLn.Addr().String(), s.smtpLn.Addr().String()
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &imapSession{srv: s, conn: c.NetConn()}, nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapListStatus: {}},
		Logger: discardLogger{},
	})
	s.smtp = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{srv: s, conn: c}, nil
	}))
	s.smtp.Domain = "localhost"
	s.smtp.ReadTimeout, s.smtp.WriteTimeout = time.Minute, time.Minute
	s.smtp.MaxMessageBytes = 1 << 20
	go func() { _ = s.imap.Serve(s.imapLn) }()
	go func() { _ = s.smtp.Serve(s.smtpLn) }()
	return s, nil
}

// listen is tls.Listen on 127.0.0.1 that also reports every completed handshake to the observer (Observe).
func (s *MailServer) listen(cfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &observingListener{Listener: ln, cfg: cfg, s: s}, nil
}

// observingListener hands out *tls.Conn server connections (the servers need the type) and, beside the server's
// own use, waits for each handshake to complete (tls.Conn.Handshake is safe for concurrent use and runs once) to
// report who it authenticated. A handshake that fails after the client sent its certificate (a card that could not
// sign) is not reported: only a complete handshake authenticates anyone.
type observingListener struct {
	net.Listener
	cfg *tls.Config
	s   *MailServer
}

func (l *observingListener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	accepted := time.Now()
	tc := tls.Server(raw, l.cfg)
	l.s.mu.Lock()
	fn := l.s.observe
	l.s.mu.Unlock()
	if fn != nil {
		go func() {
			if tc.Handshake() != nil { // ends with the server's own handshake, or when the connection closes
				return
			}
			cs := tc.ConnectionState()
			addr := ""
			if len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].EmailAddresses) > 0 {
				addr = strings.ToLower(cs.PeerCertificates[0].EmailAddresses[0])
			}
			fn(Handshake{Start: accepted, Time: time.Now(), Address: addr, Resumed: cs.DidResume})
		}()
	}
	return tc, nil
}

// Close stops both servers.
func (s *MailServer) Close() error {
	return errors.Join(s.imap.Close(), s.smtp.Close())
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// certAddress returns the e-mail address of the verified client certificate on conn, "" if none.
func certAddress(state tls.ConnectionState) string {
	if len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return ""
	}
	if e := state.PeerCertificates[0].EmailAddresses; len(e) > 0 {
		return strings.ToLower(e[0])
	}
	return ""
}

func (s *MailServer) user(addr string) *imapmemserver.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[strings.ToLower(addr)]
}

// imapSession authenticates by the card certificate, then serves the user's in-memory mailbox.
type imapSession struct {
	*imapmemserver.UserSession // nil until authenticated; imapserver calls its methods only after login
	srv                        *MailServer
	conn                       net.Conn
}

func (sess *imapSession) certUser(identity string) (*imapmemserver.User, error) {
	tc, ok := sess.conn.(*tls.Conn)
	if !ok {
		return nil, ErrNoCardCertificate
	}
	addr := certAddress(tc.ConnectionState())
	if addr == "" || (identity != "" && !strings.EqualFold(identity, addr)) {
		return nil, ErrNoCardCertificate
	}
	u := sess.srv.user(addr)
	if u == nil {
		return nil, ErrNoCardCertificate
	}
	return u, nil
}

func (sess *imapSession) AuthenticateMechanisms() []string { return []string{sasl.External} }

func (sess *imapSession) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.External {
		return nil, fmt.Errorf("demo mail server: mechanism %s not supported", mech)
	}
	return sasl.NewExternalServer(func(identity string) error {
		u, err := sess.certUser(identity)
		if err != nil {
			return err
		}
		sess.UserSession = imapmemserver.NewUserSession(u)
		return nil
	}), nil
}

// Login accepts the certificate's own address, whatever the password (operators often use an empty one).
func (sess *imapSession) Login(username, _ string) error {
	u, err := sess.certUser(username)
	if err != nil {
		return imapserver.ErrAuthFailed
	}
	sess.UserSession = imapmemserver.NewUserSession(u)
	return nil
}

func (sess *imapSession) Close() error {
	if sess.UserSession != nil {
		return sess.UserSession.Close()
	}
	return nil
}

// smtpSession accepts mail from the certificate's address after SASL EXTERNAL and delivers it to local users.
type smtpSession struct {
	srv    *MailServer
	conn   *smtp.Conn
	authed string
	rcpts  []string
}

func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.External} }

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.External {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewExternalServer(func(identity string) error {
		state, ok := ss.conn.TLSConnectionState()
		addr := certAddress(state)
		if !ok || addr == "" || (identity != "" && !strings.EqualFold(identity, addr)) {
			return ErrNoCardCertificate
		}
		ss.authed = addr
		return nil
	}), nil
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.authed == "" {
		return smtp.ErrAuthRequired
	}
	if !strings.EqualFold(from, ss.authed) {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender is not the card holder"}
	}
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.srv.user(to) == nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox here"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return err
	}
	for _, to := range ss.rcpts {
		if err := appendMessage(ss.srv.user(to), "INBOX", b, nil); err != nil {
			return err
		}
	}
	return nil
}

func (ss *smtpSession) Reset()        { ss.rcpts = nil }
func (ss *smtpSession) Logout() error { return nil }

// literal is an imap.LiteralReader over bytes.
type literal struct {
	*bytes.Reader
}

func (l literal) Size() int64 { return l.Reader.Size() }

func appendMessage(u *imapmemserver.User, mailbox string, raw []byte, flags []imap.Flag) error {
	_, err := u.Append(mailbox, literal{bytes.NewReader(raw)}, &imap.AppendOptions{Flags: flags, Time: time.Now()})
	return err
}

// fillSampleMailbox creates the demo folders and a few messages.
func fillSampleMailbox(u *imapmemserver.User, name, addr string) error {
	for _, f := range []string{"INBOX", "Patients", "Patients/Résultats", "Archives", "Sent"} {
		if err := u.Create(f, nil); err != nil && f != "INBOX" {
			return fmt.Errorf("demo mail server: create %s: %w", f, err)
		}
	}
	msgs := []struct {
		box, fromName, fromAddr, subject string
		seen                             bool
	}{
		{"INBOX", "Secrétariat", "secretariat@cardmail.test", "Bienvenue dans CardMail / Welcome to CardMail", false},
		{"INBOX", "Laboratoire", "labo@cardmail.test", "Résultats disponibles", false},
		{"INBOX", "Dr Bruno Petit", "bruno.petit@cardmail.test", "Avis sur le dossier 1042", true},
		{"Patients/Résultats", "Laboratoire", "labo@cardmail.test", "Bilan sanguin — dossier 1042", true},
		{"Archives", "Secrétariat", "secretariat@cardmail.test", "Planning de garde", true},
	}
	for i, m := range msgs {
		from := (&netmail.Address{Name: m.fromName, Address: m.fromAddr}).String()
		to := (&netmail.Address{Name: name, Address: addr}).String()
		raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <demo-%d@cardmail.test>\r\n"+
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMessage de démonstration.\r\n",
			from, to, mime.QEncoding.Encode("utf-8", m.subject),
			time.Now().Add(-time.Duration(len(msgs)-i)*time.Hour).Format(time.RFC1123Z), i)
		var flags []imap.Flag
		if m.seen {
			flags = []imap.Flag{imap.FlagSeen}
		}
		if err := appendMessage(u, m.box, []byte(raw), flags); err != nil {
			return fmt.Errorf("demo mail server: %w", err)
		}
	}
	return nil
}
