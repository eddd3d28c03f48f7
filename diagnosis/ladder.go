package diagnosis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
)

// Protocols a Target can name.
const (
	ProtocolIMAP = mail.ProtoIMAP
	ProtocolSMTP = mail.ProtoSMTP
)

// Default timeouts of the ladder.
const (
	// DefaultTimeout bounds each step (every read and write inside it).
	DefaultTimeout = 10 * time.Second
	// DefaultGreetingTimeout bounds the wait for the first server line on a plaintext connection; past it the ladder
	// probes whether the port speaks implicit TLS.
	DefaultGreetingTimeout = 5 * time.Second
	// probeTimeout bounds one follow-up probe.
	probeTimeout = 5 * time.Second
)

// Target says what one diagnosis run checks.
type Target struct {
	Account  mail.Account // server addresses, security mode, login mode, policy and certificate selection
	Protocol string       // ProtocolIMAP (ends with list) or ProtocolSMTP (ends with send)
	// SendTo is the recipient of a small test message (smtp). When empty, the send step only has the server accept
	// the envelope sender (MAIL FROM, then RSET): nothing is sent.
	SendTo string
	// Timeout bounds each step; 0 means DefaultTimeout. GreetingTimeout bounds the first plaintext line; 0 means
	// DefaultGreetingTimeout.
	Timeout, GreetingTimeout time.Duration
	// Resolver resolves the host name; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// OnStep, when set, is called with each step as soon as it is done (on the goroutine running Run), so that a
	// GUI can show the ladder live. It must not block.
	OnStep func(Step)
}

// ErrClientCertNotRequested: the handshake completed without a CertificateRequest although the login is meant to use
// the card.
var ErrClientCertNotRequested = errors.New("the server did not request a client certificate")

// ErrBadTarget: the target cannot be checked (unknown protocol, no policy, no host).
var ErrBadTarget = errors.New("invalid diagnosis target")

// Run runs the diagnosis ladder once against t on a fresh connection, and returns its report (never nil): each step
// timed, with a technical detail, and exactly one code (the words for it are the caller's: see Report). The steps
// are dns, connect, then for STARTTLS greeting and starttls before tls, for implicit TLS greeting after
// client_cert; then auth and list (IMAP) or send (SMTP). The ladder stops at the first failed step, with two
// exceptions that go on to the login to report what the server says: a handshake without a certificate request (the
// code is then client_cert_not_requested), and a card certificate whose issuer is not among the server's acceptable
// CAs (client_cert is marked failed, the certificate is sent anyway and the server decides:
// client_cert_ca_not_accepted when it refuses, ok when it accepts).
//
// The ladder owns the connection and the TLS handshake (tls.Client over its own socket, with
// t.Account.Policy.Base and sessions.TLSConfig), so it sees the typed errors; it disables TLS session resumption, so
// that every run shows the server's CertificateRequest. IMAP and SMTP are spoken by go-imap and go-smtp on that
// connection, with package mail's login, folder listing, test message and protocol log policy (see Report.Log);
// for STARTTLS the library asks for TLS and hands the socket back for the ladder's handshake. Ambiguous failures are
// told apart with follow-up probes on fresh connections (Probe).
//
// sessions may be nil: no card certificate is offered (checks of the server side only). Run asks the PIN through
// the manager's prompt when the card is not logged in yet. The password of t.Account never appears in the report,
// and neither do the account's address, the recipient or any folder name.
//
// Run honours ctx: cancelling it closes the connection, which ends any step at once (a server that drip-feeds its
// answers cannot hold it); every step also has the step timeout.
func Run(ctx context.Context, sessions *session.Manager, t Target) *Report {
	r := newRun(sessions, t)
	err := r.climb(ctx)
	r.close()
	r.collect()
	r.rep.finish(Classify(err, r.facts), err)
	r.rep.Log = r.log.snapshot()
	r.rep.redact(r.secrets(), r.addresses())
	return r.rep
}

// run is the state of one ladder run.
type run struct {
	t        Target
	srv      profile.Server
	sessions *session.Manager
	rep      *Report
	log      *protoLog
	facts    Facts
	rec      session.Record
	tf       tlspolicy.Facts
	addrs    []net.IP // resolved
	addr     string   // ip:port connected to
	raw      net.Conn // the TCP connection: closing it ends every step (set under rawMu: abort reads it)
	rawMu    sync.Mutex
	greeting []byte      // STARTTLS: what the server sent first, replayed to the protocol library
	cfg      *tls.Config // the handshake's configuration: policy, card (or none), no resumption
	tconn    *tls.Conn
	talk     dialogue // IMAP or SMTP over tconn
}

func newRun(sessions *session.Manager, t Target) *run {
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	if t.GreetingTimeout <= 0 {
		t.GreetingTimeout = DefaultGreetingTimeout
	}
	if t.Resolver == nil {
		t.Resolver = net.DefaultResolver
	}
	r := &run{t: t, sessions: sessions, rep: newReport(), log: &protoLog{}}
	if t.Protocol == ProtocolSMTP {
		r.srv = t.Account.SMTP
		r.talk = &smtpDialogue{conversation: conversation{r: r}}
	} else {
		r.srv = t.Account.IMAP
		r.talk = &imapDialogue{conversation: conversation{r: r}}
	}
	return r
}

// rung is one step of the ladder. Its run function gets the caller's context (cancellation); it bounds its own
// network waits with the step timeout, and every read and write on the connection has the step's deadline.
type rung struct {
	name string
	run  func(ctx context.Context) (detail string, err error)
	// quiet rungs add a step only when they fail (the card's TLS configuration shows as a failed client_cert).
	quiet bool
}

// rungs builds the ladder for the target's protocol and security mode.
func (r *run) rungs() []rung {
	starttls := r.srv.Security == profile.StartTLS
	rs := []rung{{name: StepDNS, run: r.resolve}, {name: StepConnect, run: r.connect}}
	if starttls {
		rs = append(rs, rung{name: StepGreeting, run: r.plainGreeting}, rung{name: StepStartTLS, run: r.startTLS})
	}
	rs = append(rs,
		rung{name: StepClientCert, run: r.cardConfig, quiet: true},
		rung{name: StepTLS, run: r.handshake},
		rung{name: StepClientCert, run: r.clientCert})
	if !starttls {
		rs = append(rs, rung{name: StepGreeting, run: r.talk.greeting})
	}
	last := StepList
	if r.t.Protocol == ProtocolSMTP {
		last = StepSend
	}
	return append(rs, rung{name: StepAuth, run: r.talk.auth}, rung{name: last, run: r.talk.finish})
}

// climb runs the rungs in order and returns the error that ends the run (nil when every step passed).
func (r *run) climb(ctx context.Context) error {
	if err := r.checkTarget(); err != nil {
		r.addStep(Step{Name: StepDNS, Detail: err.Error()})
		return err
	}
	var certErr error // a failed client_cert step: reported, and the login shows whether it matters
	for _, g := range r.rungs() {
		err := r.step(ctx, g)
		switch {
		case err == nil:
		case g.name == StepClientCert && !g.quiet:
			certErr = err
			continue
		case g.name == StepAuth && errors.Is(certErr, ErrClientCertNotRequested):
			return fmt.Errorf("%w; login: %w", certErr, err)
		default:
			return err
		}
		if g.name == StepAuth && errors.Is(certErr, ErrClientCertNotRequested) {
			return certErr // logged in without the card: the verdict is the missing request
		}
	}
	return nil
}

// step runs g, timing it and appending it to the report (quiet rungs only when they fail). The connection gets the
// step's deadline; cancelling ctx closes it, so the rung returns at once with an error wrapping ctx's.
func (r *run) step(ctx context.Context, g rung) error {
	start := time.Now()
	if r.raw != nil {
		_ = r.raw.SetDeadline(start.Add(r.t.Timeout))
	}
	stop := context.AfterFunc(ctx, r.abort)
	detail, err := g.run(ctx)
	stop()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if err == nil && g.quiet {
		return nil
	}
	if err != nil {
		if detail != "" {
			detail += ": "
		}
		detail += err.Error()
		r.facts.Step = g.name
	}
	r.addStep(Step{Name: g.name, OK: err == nil, Ms: float64(time.Since(start).Microseconds()) / 1000, Detail: detail})
	return err
}

// addStep appends st to the report and tells Target.OnStep.
func (r *run) addStep(st Step) {
	r.rep.Steps = append(r.rep.Steps, st)
	if r.t.OnStep != nil {
		r.t.OnStep(st)
	}
}

// abort closes the connection under a running step (cancellation; called on its own goroutine).
func (r *run) abort() {
	r.rawMu.Lock()
	defer r.rawMu.Unlock()
	if r.raw != nil {
		_ = r.raw.Close()
	}
}

// setRaw keeps the connection the connect step made.
func (r *run) setRaw(c net.Conn) {
	r.rawMu.Lock()
	defer r.rawMu.Unlock()
	r.raw = c
}

func (r *run) checkTarget() error {
	switch {
	case r.t.Protocol != ProtocolIMAP && r.t.Protocol != ProtocolSMTP:
		return fmt.Errorf("%w: protocol %q", ErrBadTarget, r.t.Protocol)
	case r.t.Account.Policy == nil:
		return fmt.Errorf("%w: no TLS policy", ErrBadTarget)
	case r.srv.Host == "" || r.srv.Port <= 0 || r.srv.Port > 65535:
		return fmt.Errorf("%w: server %q port %d", ErrBadTarget, r.srv.Host, r.srv.Port)
	case r.srv.Security != profile.Implicit && r.srv.Security != profile.StartTLS:
		return fmt.Errorf("%w: security %q", ErrBadTarget, r.srv.Security)
	}
	return nil
}

// close ends the run's connection: the TLS connection (close_notify, bounded by a second), the socket, then the
// protocol client.
func (r *run) close() {
	if r.tconn != nil {
		_ = r.tconn.SetDeadline(time.Now().Add(time.Second))
		_ = r.tconn.Close()
	}
	if r.raw != nil {
		_ = r.raw.Close()
	}
	r.talk.close()
}

// secrets are the strings the report must never show: the account's password (and its base64 form, see
// mail.Redact).
func (r *run) secrets() []string {
	if r.t.Account.Password == "" {
		return nil
	}
	return []string{r.t.Account.Password}
}

// addresses are the mail addresses the report must not show (servers echo them in refusals).
func (r *run) addresses() []string { return []string{r.t.Account.Address, r.t.SendTo} }
