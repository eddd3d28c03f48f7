// Package bridge serves one mail account to the mail clients of this computer's user (Thunderbird, Outlook,
// practice software): an IMAP server and an SMTP submission server on loopback, whose upstream connections are made
// with the smart card through the session manager. No client needs to know about cards, PINs or card changes.
//
// A local client logs in with the account address and the bridge password (Store.Password), over plaintext or local
// STARTTLS (Store.LoopbackTLS). After that login:
//   - IMAP: the bridge logs in upstream with the card (mail.Dialer.IMAPStream) and relays the session byte for byte,
//     so every extension the server offers (IDLE, UIDPLUS, CONDSTORE, MOVE, ...) works as it would directly; it only
//     rewrites capability lists (STARTTLS, LOGINDISABLED, AUTH=... and COMPRESS= are the upstream's business, not
//     the local client's) and says BYE when the card leaves.
//   - SMTP: the bridge logs in upstream (mail.Dialer.SMTP) and relays each transaction: MAIL, RCPT and DATA get the
//     upstream server's own reply, and a message is accepted locally only once the upstream accepted it, inside the
//     same DATA command. Nothing is queued, so nothing can be lost.
//
// The card decides: its removal or a swap closes every upstream and local connection made with it at once
// (session.Manager.Track); while no card is there, local logins get a temporary refusal (IMAP NO [UNAVAILABLE],
// SMTP 454) in the person's language, and clients retry by themselves; the next login after the card is back asks
// the PIN once for that card generation. A bridge serves one certificate: the account's (Selection.CertSHA256), or,
// when the account names none, the first one it logged in with, so another person's card never serves the account.
//
// The bridge listens on loopback addresses only; anything else is refused by Start (ErrNotLoopback).
package bridge

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/quickack"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// Default listen addresses (those of Proton Mail Bridge, which many clients' set-up guides already know).
const (
	DefaultIMAPAddr = "127.0.0.1:1143"
	DefaultSMTPAddr = "127.0.0.1:1025"
)

// Defaults of the Config durations.
const (
	DefaultLoginTimeout = 2 * time.Minute // the upstream login, PIN prompt included
	DefaultFailureDelay = time.Second     // after the first wrong bridge password; doubled up to 8 times that
	DefaultIdleTimeout  = 2 * time.Minute // a local client that says nothing before logging in
)

// Config configures a Bridge.
type Config struct {
	// Account is the upstream mailbox. Its Address is the user name local clients log in with.
	Account mail.Account
	// Dialer makes the upstream connections; its Sessions is the card's session manager. Required.
	Dialer *mail.Dialer
	// IMAPAddr and SMTPAddr are the loopback host:port to listen on ("" does not serve that protocol). A host of
	// "localhost" listens on 127.0.0.1 and, when the machine has IPv6, on ::1; port 0 picks a free port.
	IMAPAddr, SMTPAddr string
	// Password is the bridge password (Store.Password); at least 16 characters.
	Password string
	// TLS, when set, offers local STARTTLS with this server configuration (Store.LoopbackTLS).
	TLS *tls.Config
	// Lang is the language of the texts local clients show their user (refusals, BYE).
	Lang words.Lang
	// OnEvent, when set, is called for each event, from the bridge's goroutines, one call at a time and in order.
	// It must not block for long.
	OnEvent func(Event)
	// LoginTimeout bounds the upstream login of one local login, PIN prompt included; 0 means DefaultLoginTimeout.
	LoginTimeout time.Duration
	// FailureDelay is the wait after a wrong bridge password; 0 means DefaultFailureDelay.
	FailureDelay time.Duration
	// IdleTimeout closes a local connection that sends nothing for that long before its login (SMTP: at any time
	// outside DATA); 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// EventKind names an event, as in the `cardmail bridge --json` lines.
type EventKind string

// Event kinds.
const (
	ClientConnected    EventKind = "client_connected"
	ClientDisconnected EventKind = "client_disconnected"
	ClientLoggedIn     EventKind = "client_logged_in" // the client's session is now relayed upstream
	LoginRefused       EventKind = "login_refused"    // wrong bridge password, or no usable card (Code says)
	UpstreamError      EventKind = "upstream_error"   // the upstream server could not be reached or refused the card
	CardRemoved        EventKind = "card_removed"
	CardInserted       EventKind = "card_inserted"
)

// Event is something that happened to the bridge. It never carries message content, folder names or secrets.
type Event struct {
	Kind     EventKind
	Time     time.Time
	Protocol string         // "imap" or "smtp"; "" for card events
	Client   string         // the local client's address (127.0.0.1:port)
	Code     diagnosis.Code // LoginRefused, UpstreamError, and ClientDisconnected when a fault ended the session
	Err      error          // technical detail for reports (English)
	Reader   string         // card events: the reader
	Clients  int            // local connections open after the event
}

// CardState is what the bridge knows of the card.
type CardState string

// Card states.
const (
	CardUnknown CardState = "unknown" // nothing learnt yet
	CardAbsent  CardState = "absent"  // removed, or absent at the last login
	CardPresent CardState = "present" // inserted; the next login asks the PIN if this card generation has none
	CardReady   CardState = "ready"   // logged in: clients are served
)

// Status is a snapshot of a running bridge.
type Status struct {
	IMAPAddr, SMTPAddr string // what it listens on ("" when not served)
	User               string
	Clients            int // local connections open
	Relayed            int // of which logged in and relayed upstream
	Card               CardState
	LastCode           diagnosis.Code // the last refusal or upstream error ("" when none since start)
	LastErr            error
	LastTime           time.Time
	CertSHA256         string // the certificate the bridge serves ("" until the first login when the account names none)
}

// Bridge is a running bridge. Create it with Start; Close stops it. Its methods are safe for concurrent use.
type Bridge struct {
	cfg   Config
	gate  *authGate
	smtp  *smtp.Server
	lns   []net.Listener
	imap  []string // listen addresses
	smtpA []string
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	unsub func()

	evMu sync.Mutex // serialises OnEvent calls

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	relayed int
	card    CardState
	last    Event
	pin     string // hex SHA-256 of the certificate served
	closed  bool

	clients atomic.Int64
}

// Errors of Start.
var (
	// ErrNotLoopback: a listen address is not a loopback address.
	ErrNotLoopback = errors.New("not a loopback address")
	// ErrPortInUse: another program listens on the port.
	ErrPortInUse = errors.New("port already in use")
)

// ListenError says which listener could not start.
type ListenError struct {
	Protocol string // "imap" or "smtp"
	Addr     string
	Err      error // wraps ErrNotLoopback, ErrPortInUse or the system's error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("bridge: %s listener on %q: %v", e.Protocol, e.Addr, e.Err)
}
func (e *ListenError) Unwrap() error { return e.Err }

// CheckLoopback validates a listen address: host:port with a loopback IP or "localhost" and a port 0-65535. It
// returns the addresses to bind (two for localhost). Errors wrap ErrNotLoopback for other hosts.
func CheckLoopback(addr string) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return nil, fmt.Errorf("bad port %q", port)
	}
	if strings.EqualFold(host, "localhost") {
		return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}, nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%w: %q (the bridge listens on 127.0.0.1, ::1 or localhost only)", ErrNotLoopback, host)
	}
	return []string{net.JoinHostPort(ip.String(), port)}, nil
}

// Start validates cfg, binds the listeners and starts serving. Errors: *ListenError (a port taken, a non-loopback
// address), or an error naming the bad Config field.
func Start(cfg Config) (*Bridge, error) {
	switch {
	case cfg.Dialer == nil || cfg.Dialer.SessionsFor(cfg.Account) == nil:
		return nil, errors.New("bridge: Config.Dialer and a session manager (Dialer.Sessions or Account.Sessions) are required")
	case strings.TrimSpace(cfg.Account.Address) == "":
		return nil, errors.New("bridge: the account has no address (local clients log in with it)")
	case len(cfg.Password) < 16:
		return nil, errors.New("bridge: the bridge password must have at least 16 characters")
	case cfg.IMAPAddr == "" && cfg.SMTPAddr == "":
		return nil, errors.New("bridge: nothing to serve (no IMAP and no SMTP address)")
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.FailureDelay <= 0 {
		cfg.FailureDelay = DefaultFailureDelay
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Lang == "" {
		cfg.Lang = words.English
	}
	b := &Bridge{cfg: cfg, gate: newAuthGate(cfg.Account.Address, cfg.Password, cfg.FailureDelay),
		conns: map[net.Conn]struct{}{}, card: CardUnknown, pin: normalizeFP(cfg.Account.Cert.CertSHA256)}
	b.ctx, b.stop = context.WithCancel(context.Background())
	var imapLns, smtpLns []net.Listener
	var err error
	if cfg.IMAPAddr != "" {
		if imapLns, err = b.listen("imap", cfg.IMAPAddr); err != nil {
			b.Close()
			return nil, err
		}
	}
	if cfg.SMTPAddr != "" {
		if smtpLns, err = b.listen("smtp", cfg.SMTPAddr); err != nil {
			b.Close()
			return nil, err
		}
	}
	for _, l := range imapLns {
		b.imap = append(b.imap, l.Addr().String())
	}
	for _, l := range smtpLns {
		b.smtpA = append(b.smtpA, l.Addr().String())
	}
	b.unsub = cfg.Dialer.SessionsFor(cfg.Account).Subscribe(b.onCardEvent)
	for _, l := range imapLns {
		b.wg.Add(1)
		go func() { defer b.wg.Done(); b.acceptIMAP(l) }()
	}
	if len(smtpLns) > 0 {
		b.smtp = b.newSMTPServer()
		for _, l := range smtpLns {
			b.wg.Add(1)
			go func() { defer b.wg.Done(); _ = b.smtp.Serve(&countingListener{Listener: l, b: b, proto: "smtp"}) }()
		}
	}
	return b, nil
}

// listen binds addr's loopback addresses. With "localhost" the ::1 listener is best effort (IPv6 may be off), and
// a port 0 is chosen by the first listener and reused by the second.
func (b *Bridge) listen(proto, addr string) ([]net.Listener, error) {
	addrs, err := CheckLoopback(addr)
	if err != nil {
		return nil, &ListenError{Protocol: proto, Addr: addr, Err: err}
	}
	var lns []net.Listener
	for i, a := range addrs {
		if i > 0 {
			_, port, _ := net.SplitHostPort(lns[0].Addr().String())
			host, _, _ := net.SplitHostPort(a)
			a = net.JoinHostPort(host, port)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			if i > 0 && !isAddrInUse(err) {
				continue // no IPv6 loopback on this machine
			}
			if isAddrInUse(err) {
				err = fmt.Errorf("%w: %w", ErrPortInUse, err)
			}
			for _, x := range lns {
				x.Close()
			}
			return nil, &ListenError{Protocol: proto, Addr: addr, Err: err}
		}
		lns = append(lns, l)
		b.mu.Lock()
		b.lns = append(b.lns, l)
		b.mu.Unlock()
	}
	return lns, nil
}

// IMAPAddr returns the first address the IMAP server listens on ("" when not served).
func (b *Bridge) IMAPAddr() string { return first(b.imap) }

// SMTPAddr returns the first address the SMTP server listens on ("" when not served).
func (b *Bridge) SMTPAddr() string { return first(b.smtpA) }

// User returns the user name local clients log in with.
func (b *Bridge) User() string { return b.cfg.Account.Address }

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Status returns a snapshot.
func (b *Bridge) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Status{IMAPAddr: first(b.imap), SMTPAddr: first(b.smtpA), User: b.cfg.Account.Address,
		Clients: len(b.conns), Relayed: b.relayed, Card: b.card, CertSHA256: b.pin}
	if b.last.Kind != "" {
		st.LastCode, st.LastErr, st.LastTime = b.last.Code, b.last.Err, b.last.Time
	}
	return st
}

// Close stops listening, closes every local and upstream connection and waits for the bridge's goroutines. Safe
// to call more than once.
func (b *Bridge) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	lns := b.lns
	conns := make([]net.Conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	if b.stop != nil {
		b.stop()
	}
	if b.unsub != nil {
		b.unsub()
	}
	for _, l := range lns {
		l.Close()
	}
	if b.smtp != nil {
		b.smtp.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	b.wg.Wait()
	return nil
}

// emit fills the event's time and client count and hands it to OnEvent; refusals and errors are kept for Status.
func (b *Bridge) emit(ev Event) {
	ev.Time = time.Now()
	ev.Clients = int(b.clients.Load())
	if ev.Code != "" && (ev.Kind == LoginRefused || ev.Kind == UpstreamError) {
		b.mu.Lock()
		b.last = ev
		b.mu.Unlock()
	}
	if b.cfg.OnEvent == nil {
		return
	}
	b.evMu.Lock()
	defer b.evMu.Unlock()
	b.cfg.OnEvent(ev)
}

// onCardEvent follows the session manager (its goroutine; must not block).
func (b *Bridge) onCardEvent(ev session.Event) {
	var kind EventKind
	b.mu.Lock()
	switch ev.Kind {
	case session.CardRemoved, session.ServiceDown:
		kind, b.card = CardRemoved, CardAbsent
	case session.CardInserted:
		kind, b.card = CardInserted, CardPresent
	case session.LoggedIn:
		b.card = CardReady
	}
	b.mu.Unlock()
	if kind != "" {
		b.emit(Event{Kind: kind, Reader: ev.Reader, Err: ev.Err})
	}
}

// noteCard records what a login learnt about the card.
func (b *Bridge) noteCard(code diagnosis.Code) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch code {
	case diagnosis.OK:
		b.card = CardReady
	case diagnosis.CardAbsent, diagnosis.CardRemoved:
		b.card = CardAbsent
	}
}

// account returns the upstream account with the certificate pin the bridge serves.
func (b *Bridge) account() mail.Account {
	a := b.cfg.Account
	b.mu.Lock()
	a.Cert = session.Selection{CertSHA256: b.pin}
	b.mu.Unlock()
	return a
}

// pinIdentity makes the certificate of the first login the one the bridge serves when the account names none.
func (b *Bridge) pinIdentity(id *session.Identity) {
	if id == nil {
		return
	}
	fp := hex.EncodeToString(id.Cert.SHA256[:])
	b.mu.Lock()
	if b.pin == "" {
		b.pin = fp
	}
	b.mu.Unlock()
}

func normalizeFP(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(s))
}

// track registers a local connection; false when the bridge is closing.
func (b *Bridge) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Bridge) untrack(c net.Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

func (b *Bridge) setRelayed(delta int) {
	b.mu.Lock()
	b.relayed += delta
	b.mu.Unlock()
}

// classify names the diagnosis code of an upstream or card error (the facts come from the error).
func classify(err error) diagnosis.Code { return diagnosis.Classify(err, diagnosis.Facts{}) }

// refusedByCard reports codes that are about the card rather than the server (they make login_refused events).
func refusedByCard(c diagnosis.Code) bool {
	switch c {
	case diagnosis.CardAbsent, diagnosis.CardRemoved, diagnosis.PINIncorrect, diagnosis.PINLocked,
		diagnosis.PINCancelled, diagnosis.NoUsableCertificate, diagnosis.TokenUnresponsive,
		diagnosis.ModuleNotFound, diagnosis.CardMechanismUnsupported, diagnosis.CardWrongIdentity:
		return true
	}
	return false
}

// upstreamLogin runs one upstream login for a local one, bounded by LoginTimeout and the bridge's life; on failure
// it reports the event and returns the code.
func upstreamLogin[T any](b *Bridge, proto, client string, dial func(context.Context, mail.Account) (T, error)) (T, diagnosis.Code) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.LoginTimeout)
	defer cancel()
	up, err := dial(ctx, b.account())
	if err == nil {
		b.noteCard(diagnosis.OK)
		return up, diagnosis.OK
	}
	code := classify(err)
	b.noteCard(code)
	kind := UpstreamError
	if refusedByCard(code) {
		kind = LoginRefused
	}
	b.emit(Event{Kind: kind, Protocol: proto, Client: client, Code: code, Err: err})
	var zero T
	return zero, code
}

// text returns a one-line, ASCII text for a local client (RFC 3501 TEXT-CHAR, RFC 5321 replies are 7-bit).
func (b *Bridge) text(key string, data map[string]any) string {
	return wireText(words.T(b.cfg.Lang, key, data))
}

// codeText is the refusal text of a code: the message and the remedy the rest of CardMail shows.
func (b *Bridge) codeText(code diagnosis.Code) string {
	return wireText("CardMail: " + words.Message(b.cfg.Lang, code) + " " + words.Remedy(b.cfg.Lang, code))
}

// countingListener counts and tracks the connections of a listener served by go-smtp, and emits their events.
type countingListener struct {
	net.Listener
	b     *Bridge
	proto string
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := l.b.open(c, l.proto)
		if lc == nil {
			continue
		}
		lc.sniff.Store(true)
		return lc, nil
	}
}

// localConn is a tracked local connection; Close reports its end once.
type localConn struct {
	net.Conn
	b     *Bridge
	proto string
	once  sync.Once
	code  atomic.Value // diagnosis.Code of a fault that ended the session
	sniff atomic.Bool  // check the first bytes for a TLS ClientHello (SMTP; IMAP peeks itself)
}

// errTLSOnPlainPort: the client started TLS on a port that speaks plaintext first.
var errTLSOnPlainPort = errors.New("TLS handshake on a plaintext port (client set for implicit TLS)")

func (c *localConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		quickack.Now(c.Conn) // mbsync: see package quickack
	}
	if n > 0 && c.sniff.CompareAndSwap(true, false) && p[0] == 0x16 {
		c.fault(diagnosis.WrongSecurityMode)
		c.Conn.Close()
		return 0, errTLSOnPlainPort
	}
	return n, err
}

// open tracks an accepted connection and reports it; nil when the bridge is closing.
func (b *Bridge) open(c net.Conn, proto string) *localConn {
	lc := &localConn{Conn: c, b: b, proto: proto}
	if !b.track(lc) {
		c.Close()
		return nil
	}
	b.clients.Add(1)
	b.emit(Event{Kind: ClientConnected, Protocol: proto, Client: c.RemoteAddr().String()})
	return lc
}

func (c *localConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.b.untrack(c)
		c.b.clients.Add(-1)
		code, _ := c.code.Load().(diagnosis.Code)
		c.b.emit(Event{Kind: ClientDisconnected, Protocol: c.proto, Client: c.RemoteAddr().String(), Code: code})
	})
	return err
}

// fault records why the session ended, for its disconnect event.
func (c *localConn) fault(code diagnosis.Code) { c.code.CompareAndSwap(nil, code) }

// authGate checks local logins: the user name (case-insensitive) and the bridge password, compared in constant
// time. A wrong password waits FailureDelay, doubled for each consecutive failure up to 8 times, and failed
// attempts are checked one at a time, so guessing in parallel gains nothing.
type authGate struct {
	user     string
	sum      [32]byte
	base     time.Duration
	mu       sync.Mutex
	failures int
	lastFail time.Time
}

func newAuthGate(user, password string, base time.Duration) *authGate {
	return &authGate{user: strings.ToLower(strings.TrimSpace(user)), sum: sha256.Sum256([]byte(password)), base: base}
}

// check reports whether user and password are right; a wrong pair returns after the delay (or when ctx ends).
func (g *authGate) check(ctx context.Context, user, password string) bool {
	got := sha256.Sum256([]byte(password))
	u := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(user))))
	want := sha256.Sum256([]byte(g.user))
	ok := subtle.ConstantTimeCompare(got[:], g.sum[:])&subtle.ConstantTimeCompare(u[:], want[:]) == 1
	g.mu.Lock()
	defer g.mu.Unlock()
	if ok {
		g.failures = 0
		return true
	}
	if time.Since(g.lastFail) > 5*time.Minute {
		g.failures = 0
	}
	g.failures++
	g.lastFail = time.Now()
	delay := g.base << min(g.failures-1, 3)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// readLimited reads one CRLF-terminated line of at most max bytes (without the line end).
func readLimited(r *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > max {
			return "", errLineTooLong
		}
		b = append(b, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

var errLineTooLong = errors.New("line too long")
