package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cardmail/cardmail/autoconfig"
	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
)

// Accounts runs the account operations of the app on profiles: saved ones (the window) or ones built from the
// command line's flags (profile.ValidateTarget). It is where a profile meets its TLS policy, the session manager of
// its PKCS#11 module and its pinned certificate, the mail connections and the diagnosis, so that the command line
// and the window do the same thing for the same profile. Create it with NewAccounts; it is safe for concurrent use.
type Accounts struct {
	cards    Sessions
	dialer   *mail.Dialer
	pool     *mail.Pool
	cacheDir string
	// Discovery configures autoconfig.Discover (tests point it at loopback servers).
	Discovery autoconfig.Options
	// BridgeStore keeps the bridges' passwords and settings; nil means the user's (bridge.DefaultStore).
	BridgeStore *bridge.Store
	// Password, when set, gives the password of an account that logs in with LOGIN or PLAIN (the command line reads
	// CARDMAIL_PASSWORD; operators often use an empty one). It is never stored.
	Password func(p *profile.Profile) string

	mu       sync.Mutex
	policies map[string]*tlspolicy.Policy // by policy name + CA files
	bridges  *bridge.Registry             // created on first use (bridge.go)
}

// Dirs are where the service keeps its state. The directories are created on first use.
type Dirs struct {
	Cache string // CRL cache (tlspolicy); "" keeps no cache
}

// ErrNoUserCacheDir: the system gives this user no cache directory of their own (os.UserCacheDir fails: on Unix
// neither $XDG_CACHE_HOME nor $HOME is set; on Windows %LocalAppData% is not). CardMail then keeps no cache rather
// than fall back to a directory other users share.
var ErrNoUserCacheDir = errors.New("accounts: no per-user cache directory")

// CacheDirError reports why there is no per-user cache directory. It unwraps to ErrNoUserCacheDir and to the
// operating system's reason.
type CacheDirError struct{ Err error }

func (e *CacheDirError) Error() string { return fmt.Sprintf("%v: %v", ErrNoUserCacheDir, e.Err) }

// Unwrap returns ErrNoUserCacheDir and the cause.
func (e *CacheDirError) Unwrap() []error { return []error{ErrNoUserCacheDir, e.Err} }

// DefaultDirs returns the per-user directories (os.UserCacheDir()/cardmail/...). When the user has no cache
// directory it returns empty Dirs (no cache kept) and a *CacheDirError: callers go on without a cache and tell the
// person (the health-messaging policy then cannot keep the last valid CRL).
func DefaultDirs() (Dirs, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return Dirs{}, &CacheDirError{Err: err}
	}
	return Dirs{Cache: filepath.Join(base, "cardmail", "crl")}, nil
}

// Sessions gives the session manager of a PKCS#11 module ("" means the default one). *Cards is the app's; OneManager
// serves one manager for every module.
type Sessions interface {
	Manager(module string) *session.Manager
}

// OneManager is Sessions with m for every module (tests, and tools that load one module).
func OneManager(m *session.Manager) Sessions { return oneManager{m} }

type oneManager struct{ m *session.Manager }

func (o oneManager) Manager(string) *session.Manager { return o.m }

// NewAccounts returns the account service. It logs in with the cards of cards (the session manager of each
// profile's PKCS#11 module), keeps its CRL cache in dirs, and keeps IMAP connections alive with NOOP every
// keepAlive (0: mail's default, negative: none). timeout bounds each network step (0: mail's default).
func NewAccounts(cards Sessions, dirs Dirs, keepAlive, timeout time.Duration) *Accounts {
	d := &mail.Dialer{Sessions: cards.Manager(""), Timeout: timeout}
	return &Accounts{cards: cards, dialer: d, pool: mail.NewPool(d, keepAlive), cacheDir: dirs.Cache,
		policies: map[string]*tlspolicy.Policy{}}
}

// Close stops the bridges and closes the pooled connections.
func (s *Accounts) Close() error { return errors.Join(s.closeBridges(), s.pool.Close()) }

// CheckTarget checks, before anything runs, that p can become an account: a valid profile or command-line target
// whose TLS policy and CA files load. Errors: *profile.ValidationError, *tlspolicy.CAFileError,
// tlspolicy.ErrUnknownPolicy.
func CheckTarget(p *profile.Profile) error {
	if err := p.ValidateTarget(); err != nil {
		return err
	}
	_, err := tlspolicy.New(tlspolicy.Name(p.TLSPolicy), p.CAFiles, "")
	return err
}

// Account builds the mail account of a profile (or of a command-line target): its TLS policy (with its CA files,
// built once per service), the session manager of its module, its pinned certificate, and its password (see
// Password). Errors: *profile.ValidationError, *tlspolicy.CAFileError, tlspolicy.ErrUnknownPolicy.
func (s *Accounts) Account(p *profile.Profile) (mail.Account, error) {
	if err := p.ValidateTarget(); err != nil {
		return mail.Account{}, err
	}
	pol, err := s.policy(string(p.TLSPolicy), p.CAFiles)
	if err != nil {
		return mail.Account{}, err
	}
	a := mail.Account{Address: p.Address, IMAP: p.IMAP, SMTP: p.SMTP, Auth: p.Login, Policy: pol,
		Cert: session.Selection{CertSHA256: p.CertSHA256}, Sessions: s.cards.Manager(p.PKCS11Module)}
	if s.Password != nil {
		a.Password = s.Password(p)
	}
	return a, nil
}

// policy returns the TLS policy for a name and CA files, built once (its CRL cache is shared).
func (s *Accounts) policy(name string, caFiles []string) (*tlspolicy.Policy, error) {
	key := name + "\x00" + strings.Join(caFiles, "\x00")
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.policies[key]; p != nil {
		return p, nil
	}
	p, err := tlspolicy.New(tlspolicy.Name(name), caFiles, s.cacheDir)
	if err != nil {
		return nil, err
	}
	s.policies[key] = p
	return p, nil
}

// Check runs the diagnosis ladder for a profile's IMAP (protocol "imap") or SMTP ("smtp") side. progress, when not
// nil, is called after each step (from the diagnosis goroutine). It never returns nil. The report carries a code and
// technical facts; its words are the caller's (see diagnosis.Report).
func (s *Accounts) Check(ctx context.Context, p *profile.Profile, protocol string, progress func(diagnosis.Step)) *diagnosis.Report {
	return s.check(ctx, p, diagnosis.Target{Protocol: protocol, OnStep: progress})
}

// CheckSend is Check of the SMTP side that ends by sending a small test message to to.
func (s *Accounts) CheckSend(ctx context.Context, p *profile.Profile, to string, progress func(diagnosis.Step)) *diagnosis.Report {
	return s.check(ctx, p, diagnosis.Target{Protocol: diagnosis.ProtocolSMTP, SendTo: to, OnStep: progress})
}

func (s *Accounts) check(ctx context.Context, p *profile.Profile, t diagnosis.Target) *diagnosis.Report {
	a, err := s.Account(p)
	if err != nil {
		return diagnosis.Failed(diagnosis.StepDNS, fmt.Errorf("account %q: %w", p.Name, err))
	}
	t.Account, t.Timeout = a, s.dialer.Timeout
	return diagnosis.Run(ctx, a.Sessions, t)
}

// FoldersOnce lists the folders of a profile's mailbox on a connection of its own, closed afterwards (the command
// line's `folders --repeat`: a fresh connection each time, like a mail client that reconnects).
func (s *Accounts) FoldersOnce(ctx context.Context, p *profile.Profile) ([]mail.Folder, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	c, err := s.dialer.IMAP(ctx, a)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Folders(ctx)
}

// SendTestTo sends the test message to another address than the profile's own (the command line's send-test --to).
func (s *Accounts) SendTestTo(ctx context.Context, p *profile.Profile, to string) (*mail.Sent, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	return s.dialer.SendTest(ctx, a, to)
}

// Folders lists the folders of a profile's mailbox on the pooled connection (one card login per card session).
func (s *Accounts) Folders(ctx context.Context, p *profile.Profile) ([]mail.Folder, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	return s.pool.Folders(ctx, a)
}

// Headers returns one page of a folder's message headers, newest first, and the folder's message count.
func (s *Accounts) Headers(ctx context.Context, p *profile.Profile, folder string, page, pageSize int) ([]mail.Header, int, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, 0, err
	}
	return s.pool.Headers(ctx, a, folder, page, pageSize)
}

// Message fetches one message (envelope, text, list of attachments) on the pooled connection, without marking it
// as read.
func (s *Accounts) Message(ctx context.Context, p *profile.Profile, ref mail.MessageRef) (*mail.Message, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	return s.pool.Message(ctx, a, ref)
}

// Attachment writes the decoded contents of one attachment of a message (its IMAP part number, as Message lists
// it) to w on the pooled connection, and returns the number of bytes written.
func (s *Accounts) Attachment(ctx context.Context, p *profile.Profile, ref mail.MessageRef, part []int, w io.Writer) (int64, error) {
	a, err := s.Account(p)
	if err != nil {
		return 0, err
	}
	return s.pool.Attachment(ctx, a, ref, part, w)
}

// SendTest sends the test message to the profile's own address; body is the text in the person's language. A test
// message that fails is a failed test: it is not kept and not sent again (see mail.Dialer.SendTest).
func (s *Accounts) SendTest(ctx context.Context, p *profile.Profile, body string) (*mail.Sent, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	d := *s.dialer
	d.TestBody = body
	return d.SendTest(ctx, a, a.Address)
}

// Discover looks up the mail servers of an address (autoconfig XML, well-known URL, DNS SRV).
func (s *Accounts) Discover(ctx context.Context, address string) (*autoconfig.Result, error) {
	return autoconfig.Discover(ctx, address, s.Discovery)
}

// PoolStats reports the pooled connections' dials and reuses.
func (s *Accounts) PoolStats() mail.PoolStats { return s.pool.Stats() }
