package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
)

// DefaultTimeout bounds each network step when Dialer.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// Dialer makes card-authenticated mail connections. Its fields are read-only once it is in use; it is safe for
// concurrent use.
type Dialer struct {
	// Sessions resolves the card identity and closes tracked connections on a card change. Required.
	Sessions *session.Manager
	// Timeout bounds each step (connect, greeting, STARTTLS, TLS handshake, login, one command); 0 means
	// DefaultTimeout. The PIN prompt is not a network step and is bounded by the caller's context only.
	Timeout time.Duration
	// TestBody is the body text of SendTest's message (the GUI passes words in the user's language); "" means a
	// one-line technical body naming the Message-ID.
	TestBody string
	// DisableListStatus makes Folders use LIST then pipelined STATUS even when the server offers LIST-STATUS.
	DisableListStatus bool
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return DefaultTimeout
}

// Trace observes one connection attempt for the diagnosis. All fields are optional. Hooks are called from the
// goroutine making the connection and must not block.
type Trace struct {
	// Step is called after each step with its outcome and duration.
	Step func(step string, err error, d time.Duration)
	// Log receives the protocol dialogue line by line under the log policy of NewLogWriter (commands and response
	// codes; credentials replaced by Redacted, no mailbox name, address or message text).
	Log func(line string)
	// Facts, when set, is filled by the TLS policy (server chain, version, suite, revocation).
	Facts *tlspolicy.Facts
	// Record, when set, records the client-certificate side of the handshake.
	Record *session.Record
	// TLS is called with the connection state once the server certificate was verified by Go (before the policy's
	// revocation and suite checks return).
	TLS func(tls.ConnectionState)
}

type traceKey struct{}

// WithTrace returns a context whose connection attempts report to tr.
func WithTrace(ctx context.Context, tr *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, tr)
}

func traceOf(ctx context.Context) *Trace {
	if tr, ok := ctx.Value(traceKey{}).(*Trace); ok && tr != nil {
		return tr
	}
	return &Trace{}
}

// conn is the state one connection attempt shares between its steps.
type conn struct {
	d     *Dialer
	tr    *Trace
	raw   net.Conn // the TCP connection; closing it unblocks every step
	facts *tlspolicy.Facts
	rec   *session.Record
	id    *session.Identity
	// untrack ends the attempt's own registration of raw with the card's generation (see open).
	untrack func()

	mu       sync.Mutex
	state    tls.ConnectionState
	verified bool // VerifyConnection ran: the handshake reached the server's certificate
}

func (c *conn) tlsState() (tls.ConnectionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.verified
}

// step runs fn under the step timeout and ctx: when either ends first, the raw connection is closed (which unblocks
// fn) and the error wraps the context's error. Errors come back as *StepError.
func (c *conn) step(ctx context.Context, name string, fn func() error) error {
	return c.stepFor(ctx, name, c.d.timeout(), fn)
}

// stepFor is step with its own timeout (a transfer whose length depends on its size).
func (c *conn) stepFor(ctx context.Context, name string, timeout time.Duration, fn func() error) error {
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stop func() bool
	if c.raw != nil {
		raw := c.raw
		stop = context.AfterFunc(sctx, func() { raw.Close() })
	}
	err := fn()
	if stop != nil && !stop() {
		// The deadline or the caller's cancellation closed the connection under fn.
		cerr := sctx.Err()
		if err == nil {
			err = cerr
		} else if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
	}
	if err != nil {
		err = c.cardGone(err)
		var se *StepError
		if !errors.As(err, &se) {
			err = &StepError{Step: name, Err: err, Handshake: c.rec.Facts()}
		}
	}
	if c.tr.Step != nil {
		c.tr.Step(name, err, time.Since(start))
	}
	return err
}

// cardGone says why a step failed when the card's generation ended under it (the manager closed the tracked
// connection): the card's error (gone), not the network error the closed socket gave.
func (c *conn) cardGone(err error) error {
	var ce *session.CardError
	if c.id == nil || c.id.Current() || errors.As(err, &ce) {
		return err
	}
	return c.gone(err)
}

// gone is the error of a connection, or a connection attempt, that the session manager closed because its card's
// generation ended: a card error wrapping session.ErrCardRemoved and ErrClosed, then cause (if not nil).
func (c *conn) gone(cause error) error {
	err := fmt.Errorf("%w: %w", session.ErrCardRemoved, ErrClosed)
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return &session.CardError{Reader: c.id.Reader, Generation: c.id.Generation, Err: err}
}

// release ends what the attempt registered with the card's generation; a connection that succeeded has registered
// itself for its whole life by then.
func (c *conn) release() {
	if c.untrack != nil {
		c.untrack()
	}
}

// newConn starts the state of one connection attempt, with the trace's Facts and Record when it has them.
func (d *Dialer) newConn(ctx context.Context) *conn {
	c := &conn{d: d, tr: traceOf(ctx)}
	c.facts = c.tr.Facts
	if c.facts == nil {
		c.facts = new(tlspolicy.Facts)
	}
	c.rec = c.tr.Record
	if c.rec == nil {
		c.rec = new(session.Record)
	}
	return c
}

// retryResumption runs attempt on a new connection state; when it fails in the TLS handshake or just after it (TLS,
// STARTTLS, greeting or login steps) and that handshake offered a cached TLS session, it drops the session and runs
// attempt once more, which then makes a full handshake: some servers fail every resumed handshake (Dovecot 2.3 with
// TLS tickets and a long-lived login process answers "session id context uninitialized" with a fatal
// internal_error alert, real-world.md), and a resumption must never cost a connection. Card errors and a cancelled
// ctx are not retried. The trace's Record and Facts then describe the full handshake, so a second failure is
// classified from it.
func (d *Dialer) retryResumption(ctx context.Context, attempt func(cn *conn) error) error {
	cn := d.newConn(ctx)
	err := attempt(cn)
	cn.release()
	if err == nil || ctx.Err() != nil {
		return err
	}
	var se *StepError
	if !errors.As(err, &se) || !slices.Contains([]string{StepTLS, StepStartTLS, StepGreeting, StepAuth}, se.Step) {
		return err
	}
	var ce *session.CardError
	if errors.As(err, &ce) || !cn.rec.ForgetResumption() {
		return err
	}
	if cn.tr.Log != nil {
		cn.tr.Log("-- the server refused to resume the TLS session; retrying once with a full handshake")
	}
	cn = d.newConn(ctx)
	err = attempt(cn)
	cn.release()
	return err
}

// open starts connection attempt cn to srv: the card's TLS configuration first (no network I/O: an absent card
// fails here), then the TCP connection, which is tracked with the card's generation from then on: a card change
// during the handshake, the greeting or the login closes it there, so no server keeps authenticating a card that has
// left (retryResumption ends that registration once the attempt is over).
func (d *Dialer) open(ctx context.Context, a Account, srv profile.Server, cn *conn) (*tls.Config, error) {
	cfg, err := d.tlsConfig(ctx, a, srv, cn)
	if err != nil {
		return nil, err
	}
	if err := cn.connect(ctx, srv); err != nil {
		return nil, err
	}
	if cn.id != nil {
		cn.untrack = cn.id.Track(cn.raw)
	}
	return cfg, nil
}

// SessionsFor is the session manager that serves a's card: a.Sessions, else d.Sessions.
func (d *Dialer) SessionsFor(a Account) *session.Manager {
	if a.Sessions != nil {
		return a.Sessions
	}
	return d.Sessions
}

// connect opens the TCP connection to srv.
func (c *conn) connect(ctx context.Context, srv profile.Server) error {
	return c.step(ctx, StepConnect, func() error {
		nd := &net.Dialer{Timeout: c.d.timeout()}
		raw, err := nd.DialContext(ctx, "tcp", srv.Addr())
		c.raw = raw
		return err
	})
}

// tlsConfig builds the connection's TLS configuration: the account policy's base for the host, the card hook of the
// session manager, and state capture in VerifyConnection. It resolves the card identity (the PIN may be asked here),
// so a missing card fails before any network I/O.
func (d *Dialer) tlsConfig(ctx context.Context, a Account, srv profile.Server, c *conn) (*tls.Config, error) {
	sessions := d.SessionsFor(a)
	if sessions == nil {
		return nil, &ConfigError{Field: "Sessions"}
	}
	base := a.Policy.Base(srv.Host, c.facts)
	inner := base.VerifyConnection
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		c.mu.Lock()
		c.state, c.verified = cs, true
		c.mu.Unlock()
		if c.tr.TLS != nil {
			c.tr.TLS(cs)
		}
		if inner != nil {
			return inner(cs)
		}
		return nil
	}
	start := time.Now()
	cfg, id, err := sessions.TLSConfig(ctx, base, a.Cert, c.rec)
	if c.tr.Step != nil {
		c.tr.Step(StepCard, err, time.Since(start))
	}
	if err != nil {
		return nil, &StepError{Step: StepCard, Err: err}
	}
	c.id = id
	return cfg, nil
}

// handshake runs the TLS client handshake over c.raw and replaces c.raw's role with the TLS connection for reads
// and writes (c.raw stays the socket that steps close).
func (c *conn) handshake(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Client(c.raw, cfg)
	err := c.step(ctx, StepTLS, func() error {
		if err := tc.HandshakeContext(ctx); err != nil {
			return c.rec.Explain(err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// closerFunc adapts a func to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }

var _ io.Closer = closerFunc(nil)
