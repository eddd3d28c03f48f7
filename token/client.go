package token

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/rpc"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cardmail/cardmail/token/internal/wire"
)

// Options tune a Client. Zero fields take the defaults shown.
type Options struct {
	StartTimeout  time.Duration // exec + module load + C_Initialize; default 10s
	ListTimeout   time.Duration // Slots, Certificates, Mechanisms, TokenInfo; default 10s
	LoginTimeout  time.Duration // Login with a PIN; default 10s
	PINPadTimeout time.Duration // Login with a nil PIN (the user types on the reader); default 60s
	SignTimeout   time.Duration // Sign; default 4s
	CloseGrace    time.Duration // Close: time for C_Finalize and exit before SIGKILL; default 1s
	Stderr        io.Writer     // the agent's stderr (its log); default os.Stderr
	Executable    string        // the binary to start as agent; default os.Executable()
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StartTimeout, 10*time.Second)
	def(&o.ListTimeout, 10*time.Second)
	def(&o.LoginTimeout, 10*time.Second)
	def(&o.PINPadTimeout, 60*time.Second)
	def(&o.SignTimeout, 4*time.Second)
	def(&o.CloseGrace, time.Second)
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
}

// Client talks to one agent process, which has one PKCS#11 module loaded. All methods are safe for concurrent use;
// calls reach the agent one at a time, in turn (the module runs one PKCS#11 call at a time anyway).
//
// Every call has a deadline: the per-call timeout of Options, counted from the moment the call reaches the agent
// (a signature queued behind others on a slow card does not spend it), capped by the ctx's deadline. When it
// passes, the agent is killed and the call returns an *OpError wrapping ErrTokenUnresponsive. When the ctx ends
// while the call still waits for its turn, the call returns an *OpError wrapping ErrBusy and the agent lives on. Once the agent is dead every call returns
// an *OpError wrapping why: ErrTokenUnresponsive (a deadline passed), ErrAgentKilled (Kill, Close, or a cancelled
// ctx, which also kills the agent since a PKCS#11 call cannot be interrupted) or ErrAgentExited (the agent died on
// its own; wraps the exit status). A dead Client stays dead: start a new one. The caller must call Close or Kill.
type Client struct {
	opt    Options
	module Module
	cmd    *exec.Cmd
	conn   *pipeConn
	rpc    *rpc.Client
	done   chan struct{}
	turn   chan struct{} // held by the call the agent is running

	info ModuleInfo // C_GetInfo, read by Init; immutable afterwards

	mu      sync.Mutex
	reason  error // why we killed the agent; nil if it exited by itself
	closed  bool
	waitErr error // cmd.Wait result; read only after done is closed
}

// Start starts an agent for the module at modulePath ("" = the first of KnownModules) with default Options.
// See StartOptions.
func Start(ctx context.Context, modulePath string) (*Client, error) {
	return StartOptions(ctx, modulePath, Options{})
}

// StartOptions starts the agent (this executable with CARDMAIL_TOKEN_AGENT=1), which loads the module and calls
// C_Initialize. Errors: *ModuleError wrapping ErrModuleNotFound (no such file) or ErrNotPKCS11 (the file is not a
// PKCS#11 module); *OpError{Op: "start"} otherwise (e.g. a *CKRError from C_Initialize, ErrTokenUnresponsive). If
// ctx ends or StartTimeout passes during start, the agent is killed.
func StartOptions(ctx context.Context, modulePath string, opt Options) (*Client, error) {
	opt.defaults()
	mod, err := ResolveModule(modulePath)
	if err != nil {
		return nil, err
	}
	exe := opt.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, &OpError{Op: "start", Err: err}
		}
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, &OpError{Op: "start", Err: err}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, &OpError{Op: "start", Err: err}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(agentEnv(os.Environ()), envAgent+"=1", envModule+"="+mod.Path)
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.Stderr = opt.Stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, &OpError{Op: "start", Err: err}
	}
	if err := bindToParent(cmd.Process); err != nil { // Windows: a job object kills the agent when we die
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		inW.Close()
		outR.Close()
		return nil, &OpError{Op: "start", Err: err}
	}
	c := &Client{opt: opt, module: mod, cmd: cmd, conn: &pipeConn{r: outR, w: inW}, done: make(chan struct{}),
		turn: make(chan struct{}, 1)}
	c.rpc = rpc.NewClient(c.conn)
	go func() {
		err := cmd.Wait()
		c.rpc.Close() // closes both pipes; pending calls fail with rpc.ErrShutdown
		c.waitErr = err
		close(c.done)
	}()
	var resp wire.Response
	if err := c.call(ctx, "start", "Init", opt.StartTimeout, &wire.Request{}, &resp); err != nil {
		c.Kill()
		<-c.done
		if errors.Is(err, ErrNotPKCS11) {
			return nil, &ModuleError{Path: mod.Path, Err: ErrNotPKCS11}
		}
		return nil, err
	}
	c.info = ModuleInfo{Path: mod.Path, Manufacturer: resp.Module.Manufacturer, Description: resp.Module.Description,
		Version: resp.Module.Version, CryptokiVersion: resp.Module.CryptokiVersion}
	return c, nil
}

// ModuleInfo describes the module the agent loaded (C_GetInfo at start; Path only when the module did not answer).
func (c *Client) ModuleInfo() ModuleInfo { return c.info }

// pipeConn joins the two pipes to the agent.
type pipeConn struct {
	r *os.File
	w *os.File
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) Close() error {
	return errors.Join(p.w.Close(), p.r.Close())
}

// Module is the module the agent loaded.
func (c *Client) Module() Module { return c.module }

// PID is the agent's process id.
func (c *Client) PID() int { return c.cmd.Process.Pid }

// Done is closed when the agent process has exited.
func (c *Client) Done() <-chan struct{} { return c.done }

// Kill kills the agent now (SIGKILL) without waiting. Pending and later calls fail with ErrAgentKilled. Safe to
// call more than once and concurrently.
func (c *Client) Kill() { c.kill(ErrAgentKilled) }

func (c *Client) kill(reason error) {
	c.mu.Lock()
	select {
	case <-c.done:
	default:
		if c.reason == nil {
			c.reason = reason
		}
		_ = c.cmd.Process.Kill()
	}
	c.mu.Unlock()
}

// Close finalizes the module (C_Finalize) and lets the agent exit; if that takes longer than CloseGrace the agent
// is killed. Calls made after or during Close fail with ErrAgentKilled. Close waits for the process to end and
// returns the C_Finalize error, or an *OpError wrapping ErrTokenUnresponsive if the agent had to be killed. Later
// calls to Close return nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case <-c.done:
		return nil
	default:
	}
	var resp wire.Response
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.opt.CloseGrace) // the wait for the turn, then the call
	err := c.call(ctx, "close", "Finalize", c.opt.CloseGrace, &wire.Request{}, &resp)
	cancel()
	c.mu.Lock()
	if c.reason == nil {
		c.reason = ErrAgentKilled
	}
	c.mu.Unlock()
	c.conn.w.Close() // EOF on the agent's stdin: it exits
	select {
	case <-c.done:
	case <-time.After(c.opt.CloseGrace):
		c.kill(ErrAgentKilled)
		<-c.done
		if err == nil {
			err = &OpError{Op: "close", Err: ErrTokenUnresponsive}
		}
	}
	if errors.Is(err, ErrAgentKilled) || errors.Is(err, ErrAgentExited) {
		return nil // already dead: nothing left to close
	}
	return err
}

// deadErr explains why the agent is gone, for op.
func (c *Client) deadErr(op string) error {
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	if reason != nil {
		return &OpError{Op: op, Err: reason}
	}
	select {
	case <-c.done:
		status := c.waitErr
		if status == nil {
			status = errors.New("exit status 0")
		}
		return &OpError{Op: op, Err: fmt.Errorf("%w: %w", ErrAgentExited, status)}
	default:
		return &OpError{Op: op, Err: fmt.Errorf("%w: connection lost", ErrAgentExited)}
	}
}

// call runs one agent method with a deadline (ctx capped by timeout).
func (c *Client) call(ctx context.Context, op, method string, timeout time.Duration, req *wire.Request, resp *wire.Response) error {
	select {
	case <-c.done:
		return c.deadErr(op)
	default:
	}
	c.mu.Lock()
	dead := c.reason != nil
	c.mu.Unlock()
	if dead {
		return c.deadErr(op)
	}
	select {
	case c.turn <- struct{}{}:
	case <-c.done:
		return c.deadErr(op)
	case <-ctx.Done():
		return &OpError{Op: op, Err: fmt.Errorf("%w: %w", ErrBusy, ctx.Err())}
	}
	defer func() { <-c.turn }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := c.rpc.Go(wire.Service+"."+method, req, resp, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		return c.result(op, call, resp)
	case <-ctx.Done():
		select {
		case <-call.Done: // finished at the same time: keep the result
			return c.result(op, call, resp)
		default:
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			c.kill(ErrTokenUnresponsive)
			return &OpError{Op: op, Err: ErrTokenUnresponsive}
		}
		c.kill(ErrAgentKilled)
		return &OpError{Op: op, Err: fmt.Errorf("%w: %w", ErrAgentKilled, ctx.Err())}
	}
}

func (c *Client) result(op string, call *rpc.Call, resp *wire.Response) error {
	if call.Error != nil {
		// Transport failure: the agent is gone or broke the protocol. Give it CloseGrace to be reaped.
		select {
		case <-c.done:
		case <-time.After(c.opt.CloseGrace):
			c.kill(fmt.Errorf("%w: %w", ErrAgentExited, call.Error))
		}
		return c.deadErr(op)
	}
	if err := fromWire(resp.Err); err != nil {
		return &OpError{Op: op, Err: err}
	}
	return nil
}

// Slots lists the slots that hold an initialised token. Errors: *OpError{Op: "slots"} wrapping a *CKRError or a
// dead-agent sentinel.
func (c *Client) Slots(ctx context.Context) ([]Slot, error) {
	var resp wire.Response
	if err := c.call(ctx, "slots", "Slots", c.opt.ListTimeout, &wire.Request{}, &resp); err != nil {
		return nil, err
	}
	out := make([]Slot, len(resp.Slots))
	for i, s := range resp.Slots {
		out[i] = Slot{ID: s.ID, Description: s.Description, Token: TokenInfo(s.Token)}
	}
	return out, nil
}

// TokenInfo reads the token's information and flags (C_GetTokenInfo).
func (c *Client) TokenInfo(ctx context.Context, slot uint) (TokenInfo, error) {
	var resp wire.Response
	if err := c.call(ctx, "token-info", "TokenInfo", c.opt.ListTimeout, &wire.Request{Slot: slot}, &resp); err != nil {
		return TokenInfo{}, err
	}
	return TokenInfo(resp.Token), nil
}

// Mechanisms reports which signature mechanisms the slot's token offers.
func (c *Client) Mechanisms(ctx context.Context, slot uint) (Mechanisms, error) {
	var resp wire.Response
	if err := c.call(ctx, "mechanisms", "Mechanisms", c.opt.ListTimeout, &wire.Request{Slot: slot}, &resp); err != nil {
		return Mechanisms{}, err
	}
	return Mechanisms(resp.Mech), nil
}

// Certificates lists the token's X.509 certificates without logging in, each paired with the private key of the
// same CKA_ID (HasPrivateKey; see PrivateKeyInferred for cards that hide private keys until login) and
// evaluated at the current time. A certificate object whose value does not parse
// is returned with ParseErr set and ReasonMalformed; it does not stop the listing.
func (c *Client) Certificates(ctx context.Context, slot uint) ([]Certificate, error) {
	var ti wire.Response
	if err := c.call(ctx, "certificates", "TokenInfo", c.opt.ListTimeout, &wire.Request{Slot: slot}, &ti); err != nil {
		return nil, err
	}
	var resp wire.Response
	if err := c.call(ctx, "certificates", "Certificates", c.opt.ListTimeout, &wire.Request{Slot: slot}, &resp); err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]Certificate, len(resp.Certs))
	for i, w := range resp.Certs {
		out[i] = newCertificateInferred(slot, ti.Token.Label, ti.Token.Serial, w.ID, w.Label, w.DER, w.HasPrivateKey, w.PrivateKeyInferred, now)
	}
	return out, nil
}

// Login opens the session kept for signing on slot and calls C_Login exactly once; it never retries. pin is
// zeroed before Login returns, whatever happens (the agent zeroes its copy too). A nil pin means the protected
// authentication path (PIN pad): C_Login with a NULL PIN and the PINPadTimeout. CKR_USER_ALREADY_LOGGED_IN counts
// as success. Errors: *OpError{Op: "login"} wrapping *PINError (CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
// CKR_PIN_LEN_RANGE; tries left read from the token flags after the failure), *CKRError, or a dead-agent sentinel.
func (c *Client) Login(ctx context.Context, slot uint, pin []byte) error {
	defer clear(pin)
	req := &wire.Request{Slot: slot, PIN: pin, PINPad: pin == nil}
	timeout := c.opt.LoginTimeout
	if pin == nil {
		timeout = c.opt.PINPadTimeout
	}
	var resp wire.Response
	return c.call(ctx, "login", "Login", timeout, req, &resp)
}

// Sign signs digest (already hashed with s.Hash) with the private key whose CKA_ID is keyID, in the session
// opened by Login. The key handle is cached for the agent's life. RSA signatures are the raw big-endian
// signature; ECDSA ones are ASN.1 DER. Errors: *OpError{Op: "sign"} wrapping ErrNotLoggedIn, ErrNoSuchKey,
// ErrBadInput, a *CKRError (check CardChanged), or a dead-agent sentinel (ErrTokenUnresponsive after SignTimeout).
func (c *Client) Sign(ctx context.Context, slot uint, keyID []byte, digest []byte, s Scheme) ([]byte, error) {
	req := &wire.Request{Slot: slot, KeyID: keyID, Digest: digest, SchemeKind: int(s.Kind), Hash: uint(s.Hash), SaltLength: s.SaltLength}
	var resp wire.Response
	if err := c.call(ctx, "sign", "Sign", c.opt.SignTimeout, req, &resp); err != nil {
		return nil, err
	}
	return resp.Signature, nil
}

// SchemeFor is a helper for crypto.Signer implementations: the Scheme for opts with a key of type keyType
// ("RSA" or "ECDSA", as in Certificate.KeyType): PSS when opts is *rsa.PSSOptions (its SaltLength as documented
// on Scheme), PKCS1v15 otherwise for RSA.
func SchemeFor(keyType string, opts crypto.SignerOpts) Scheme {
	if keyType == "ECDSA" {
		return Scheme{Kind: ECDSA, Hash: opts.HashFunc()}
	}
	if p, ok := opts.(*rsa.PSSOptions); ok {
		return Scheme{Kind: PSS, Hash: p.Hash, SaltLength: p.SaltLength}
	}
	return Scheme{Kind: PKCS1v15, Hash: opts.HashFunc()}
}

// secretEnv lists environment variables that may hold secrets for unattended runs (the CLI's CARDMAIL_PIN and
// CARDMAIL_PASSWORD): the agent never gets them, the PIN reaches it only through Login.
var secretEnv = []string{"CARDMAIL_PIN=", "CARDMAIL_PASSWORD="}

// agentEnv returns env without the secret variables.
func agentEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !slices.ContainsFunc(secretEnv, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			out = append(out, kv)
		}
	}
	return out
}
