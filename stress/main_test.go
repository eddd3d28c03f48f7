// Package stress_test holds CardMail's proof under stress (issue 6): the torture test (random card removal,
// reinsertion and swap while folder listings and test connections run), fault injection (pcscd, Dovecot, the
// PKCS#11 agent, a card pulled mid-signature, bad modules, a silent server), fuzz targets and the secrets audit.
// Everything runs on the real chain: pcscd + vpcd + the bench's virtual cards + OpenSC, real mail servers on
// 127.0.0.1. Tests that need the card go through bench.Start, which takes the machine-wide bench lock.
package stress_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() { // the session manager starts this test binary as its PKCS#11 agent
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (agent stderr copiers) and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventLog records every event a session.Manager delivers, so a test can wait for one that happened after a given
// instant without racing a buffered channel.
type eventLog struct {
	mu     sync.Mutex
	events []session.Event
	grew   chan struct{} // closed and replaced on every append
}

func newEventLog() *eventLog { return &eventLog{grew: make(chan struct{})} }

func (l *eventLog) add(ev session.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	close(l.grew)
	l.grew = make(chan struct{})
	l.mu.Unlock()
}

// wait returns the first event at or after index from that matches, waiting up to timeout; ok is false on timeout.
// It returns the index after the match, to chain waits.
func (l *eventLog) wait(from int, timeout time.Duration, match func(session.Event) bool) (ev session.Event, next int, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if match(l.events[i]) {
				ev = l.events[i]
				l.mu.Unlock()
				return ev, i + 1, true
			}
		}
		from = len(l.events)
		grew := l.grew
		l.mu.Unlock()
		select {
		case <-grew:
		case <-deadline.C:
			return session.Event{}, from, false
		}
	}
}

// mark is the index the next event will get.
func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// rig is the bench with a real session.Manager fed by reader.Watch, answering PIN prompts with pin, starting its
// PKCS#11 agents with their stderr captured and their clients remembered (to find and kill their processes).
type rig struct {
	b        *bench.Bench
	m        *session.Manager
	ev       *eventLog
	prompts  atomic.Int32
	agentErr *syncBuffer // every agent's stderr

	mu      sync.Mutex
	clients []*token.Client

	stop func() // cancels the watcher, waits for Run to return and closes the manager; idempotent
}

type rigOptions struct {
	pin      string        // answered to every PIN prompt; "" means bench.DefaultPIN
	module   string        // PKCS#11 module; "" means the bench's OpenSC
	bench    *bench.Bench  // reuse this bench instead of bench.Start
	signTime time.Duration // session.Config.SignTimeout (0: the manager's default)
}

func newRig(t testing.TB, opt rigOptions) *rig {
	t.Helper()
	b := opt.bench
	if b == nil {
		b = bench.Start(t)
	}
	if opt.pin == "" {
		opt.pin = bench.DefaultPIN
	}
	if opt.module == "" {
		opt.module = b.OpenSC
	}
	r := &rig{b: b, ev: newEventLog(), agentErr: &syncBuffer{}}
	r.m = session.New(session.Config{
		Module:      opt.module,
		SignTimeout: opt.signTime,
		PINPrompt: func(ctx context.Context, req session.PINRequest) ([]byte, error) {
			r.prompts.Add(1)
			return []byte(opt.pin), nil
		},
		StartAgent: func(ctx context.Context, module string) (session.Agent, error) {
			c, err := token.StartOptions(ctx, module, token.Options{Stderr: r.agentErr})
			if err != nil {
				return nil, err
			}
			r.mu.Lock()
			r.clients = append(r.clients, c)
			r.mu.Unlock()
			return c, nil
		},
	})
	r.m.Subscribe(r.ev.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.m.Run(ctx, reader.Watch(ctx)) }()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done; _ = r.m.Close() }) }
	t.Cleanup(r.stop)
	return r
}

// liveClients returns the agent clients whose process has not exited.
func (r *rig) liveClients() []*token.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*token.Client
	for _, c := range r.clients {
		select {
		case <-c.Done():
		default:
			out = append(out, c)
		}
	}
	return out
}

// managerTimeout bounds every wait for the manager to apply a reader event.
const managerTimeout = 10 * time.Second

// insert puts card into slot 0 and waits until pcscd and then the manager report it.
func (r *rig) insert(t testing.TB, card int) {
	t.Helper()
	from := r.ev.mark()
	r.b.InsertWait(t, card, 0)
	r.waitKind(t, from, session.CardInserted)
}

// remove takes the card out of slot 0 and waits until pcscd and then the manager report it.
func (r *rig) remove(t testing.TB) {
	t.Helper()
	from := r.ev.mark()
	r.b.RemoveWait(t, 0)
	r.waitKind(t, from, session.CardRemoved)
}

func (r *rig) waitKind(t testing.TB, from int, kind session.EventKind) {
	t.Helper()
	rd := r.b.Readers[0]
	if _, _, ok := r.ev.wait(from, managerTimeout, func(ev session.Event) bool {
		return ev.Kind == kind && ev.Reader == rd && (kind != session.CardRemoved || ev.Err == nil)
	}); !ok {
		t.Fatalf("the session manager did not report %v for %q within %v", kind, rd, managerTimeout)
	}
}

// caFile writes the bench CA to a file in dir and returns its path.
func caFile(t testing.TB, b *bench.Bench, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, b.PKI.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// handshakeAs makes one TLS connection to addr with the card (the session manager's TLS hook), reads the server's
// first line (so that a certificate the server refuses after a TLS 1.3 handshake shows) and closes. The error is
// recovered through the record, as the mail package does. It may resume a TLS session of the same card generation
// (no signature); see freshHandshake. sel chooses the certificate.
func handshakeAs(ctx context.Context, m *session.Manager, roots *x509.CertPool, addr string, sel session.Selection) error {
	return dialCard(ctx, m, roots, addr, sel, false)
}

// freshHandshake is handshakeAs with the first usable certificate and without TLS session resumption: the card
// always signs.
func freshHandshake(ctx context.Context, m *session.Manager, roots *x509.CertPool, addr string) error {
	return dialCard(ctx, m, roots, addr, session.Selection{}, true)
}

func dialCard(ctx context.Context, m *session.Manager, roots *x509.CertPool, addr string, sel session.Selection, fresh bool) error {
	rec := &session.Record{}
	cfg, _, err := m.TLSConfig(ctx, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, sel, rec)
	if err != nil {
		return err
	}
	if fresh {
		cfg.ClientSessionCache = nil
	}
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return rec.Explain(err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return rec.Explain(err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("* OK")) {
		return fmt.Errorf("unexpected greeting %q", buf[:n])
	}
	return nil
}

// codeOf names an error the way the app does (the diagnosis classifier, facts from the error).
func codeOf(err error) diagnosis.Code { return diagnosis.Classify(err, diagnosis.Facts{}) }

// agentPIDs lists the live (non-zombie) children of this process that run as token agents (their environment has
// CARDMAIL_TOKEN_AGENT=1).
func agentPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		end := strings.LastIndexByte(s, ')')
		if end < 0 || end+2 >= len(s) {
			continue
		}
		fields := strings.Fields(s[end+2:]) // state ppid ...
		if len(fields) < 2 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte("CARDMAIL_TOKEN_AGENT=1\x00")) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// openFDs counts this process's open file descriptors.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// resources is a snapshot of what a test must give back.
type resources struct {
	goroutines, fds, agents int
}

func snapshot() resources {
	return resources{goroutines: runtime.NumGoroutine(), fds: openFDs(), agents: len(agentPIDs())}
}

// settle waits up to d until goroutines and fds are back to base and no agent process remains; it returns the last
// snapshot and whether it settled.
func settle(base resources, d time.Duration) (resources, bool) {
	deadline := time.Now().Add(d)
	for {
		now := snapshot()
		if now.goroutines <= base.goroutines && now.fds <= base.fds && now.agents == 0 {
			return now, true
		}
		if time.Now().After(deadline) {
			return now, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goroutineDump is the stacks of every goroutine, for a failure message.
func goroutineDump() string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

// fdDump lists this process's open file descriptors and their targets.
func fdDump() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fmt.Fprintf(&b, "%s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// isTimeout reports a deadline that passed (a hang the deadline caught).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, token.ErrTokenUnresponsive) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// sha256Hex is the lowercase hex SHA-256 of b.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
