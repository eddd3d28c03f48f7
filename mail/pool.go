package mail

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
)

// DefaultKeepAlive is the interval of the Pool's NOOP keep-alive.
const DefaultKeepAlive = 60 * time.Second

// Pool keeps one logged-in IMAPConn per account and card generation, kept alive with NOOP. It never hands out a
// connection whose card generation has ended: the session manager closes those on a card change, and the next use
// dials again, which asks the PIN once through the manager (or fails with session.ErrCardAbsent while the card is
// out). All methods are safe for concurrent use.
type Pool struct {
	d         *Dialer
	keepAlive time.Duration

	mu      sync.Mutex
	entries map[poolKey]*poolEntry
	closed  bool

	dials atomic.Int64
	reuse atomic.Int64
}

// poolKey identifies an account's IMAP connection. The password is part of the identity of the login but kept out
// of anything printed.
type poolKey struct {
	address  string
	server   profile.Server
	auth     profile.Login
	password string
	cert     session.Selection
	policy   *tlspolicy.Policy
	sessions *session.Manager
}

func keyOf(a Account) poolKey {
	return poolKey{address: a.Address, server: a.IMAP, auth: a.auth(), password: a.Password, cert: a.Cert,
		policy: a.Policy, sessions: a.Sessions}
}

type poolEntry struct {
	mu   sync.Mutex // held while dialing, so one account dials once
	conn *IMAPConn
}

// NewPool returns a pool dialing with d. keepAlive is the NOOP interval: 0 means DefaultKeepAlive, negative none.
func NewPool(d *Dialer, keepAlive time.Duration) *Pool {
	if keepAlive == 0 {
		keepAlive = DefaultKeepAlive
	}
	return &Pool{d: d, keepAlive: keepAlive, entries: map[poolKey]*poolEntry{}}
}

// PoolStats counts the pool's work.
type PoolStats struct {
	Dials  int64 // connections made (each one a TLS handshake)
	Reuses int64 // uses served by a kept connection
}

// Stats returns the counters.
func (p *Pool) Stats() PoolStats { return PoolStats{Dials: p.dials.Load(), Reuses: p.reuse.Load()} }

// Conn returns a's kept connection when it is open and of the current card generation, else dials a new one
// (closing the old). The connection stays owned by the pool: do not Close it.
func (p *Pool) Conn(ctx context.Context, a Account) (*IMAPConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	k := keyOf(a)
	e := p.entries[k]
	if e == nil {
		e = &poolEntry{}
		p.entries[k] = e
	}
	p.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil && e.conn.Alive() {
		p.reuse.Add(1)
		return e.conn, nil
	}
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
	c, err := p.d.IMAP(ctx, a)
	if err != nil {
		return nil, err
	}
	p.dials.Add(1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return nil, ErrClosed
	}
	p.mu.Unlock()
	e.conn = c
	if p.keepAlive > 0 {
		go p.keepAliveLoop(c)
	}
	return c, nil
}

// keepAliveLoop sends NOOP every interval until c is closed; a failed NOOP closes c (the next use dials again).
func (p *Pool) keepAliveLoop(c *IMAPConn) {
	t := time.NewTicker(p.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.Done():
			return
		case <-t.C:
			if err := c.Noop(context.Background()); err != nil {
				c.Close()
				return
			}
		}
	}
}

// with runs fn on a's connection; when the kept connection turns out to be dead for a reason other than the card
// (the server hung up an idle connection), it dials once more and retries.
func (p *Pool) with(ctx context.Context, a Account, fn func(*IMAPConn) error) error {
	c, err := p.Conn(ctx, a)
	if err != nil {
		return err
	}
	err = fn(c)
	if err == nil || c.Alive() || !c.cn.id.Current() || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	c2, err2 := p.Conn(ctx, a)
	if err2 != nil {
		return err2
	}
	return fn(c2)
}

// Folders is IMAPConn.Folders on a's pooled connection.
func (p *Pool) Folders(ctx context.Context, a Account) ([]Folder, error) {
	var out []Folder
	err := p.with(ctx, a, func(c *IMAPConn) error {
		var err error
		out, err = c.Folders(ctx)
		return err
	})
	return out, err
}

// Headers is IMAPConn.Headers on a's pooled connection.
func (p *Pool) Headers(ctx context.Context, a Account, folder string, page, pageSize int) ([]Header, int, error) {
	var out []Header
	var total int
	err := p.with(ctx, a, func(c *IMAPConn) error {
		var err error
		out, total, err = c.Headers(ctx, folder, page, pageSize)
		return err
	})
	return out, total, err
}

// Message is IMAPConn.Message on a's pooled connection.
func (p *Pool) Message(ctx context.Context, a Account, ref MessageRef) (*Message, error) {
	var out *Message
	err := p.with(ctx, a, func(c *IMAPConn) error {
		var err error
		out, err = c.Message(ctx, ref)
		return err
	})
	return out, err
}

// Attachment is IMAPConn.Attachment on a's pooled connection. A retry on a new connection happens only when
// nothing was written to w yet.
func (p *Pool) Attachment(ctx context.Context, a Account, ref MessageRef, part []int, w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	var first error
	err := p.with(ctx, a, func(c *IMAPConn) error {
		if cw.n > 0 {
			return first // a transfer that had begun is not started again on top of what w holds
		}
		_, first = c.Attachment(ctx, ref, part, cw)
		return first
	})
	return cw.n, err
}

// countingWriter counts what went through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// Close closes every kept connection; later calls fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	entries := p.entries
	p.entries = map[poolKey]*poolEntry{}
	p.mu.Unlock()
	var errs []error
	for _, e := range entries {
		e.mu.Lock()
		if e.conn != nil {
			errs = append(errs, e.conn.Close())
			e.conn = nil
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}
