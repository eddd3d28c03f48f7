// Package accounts turns saved profiles into live mail accounts: it is the one place where a profile meets a TLS
// policy, the card's session manager, the mail connections and the diagnosis, so that the CLI and the GUI do the
// same thing for the same profile.
package accounts

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

// Service runs the account operations of the app. Create it with New; it is safe for concurrent use.
type Service struct {
	sessions *session.Manager
	dialer   *mail.Dialer
	pool     *mail.Pool
	cacheDir string
	// Discovery configures autoconfig.Discover (tests point it at loopback servers).
	Discovery autoconfig.Options
	// BridgeStore keeps the bridges' passwords and settings; nil means the user's (bridge.DefaultStore).
	BridgeStore *bridge.Store

	mu       sync.Mutex
	policies map[string]*tlspolicy.Policy // by policy name + CA files
	bridges  *bridge.Registry             // created on first use (accounts/bridge.go)
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

// New returns a service that logs in with the cards of sessions. keepAlive is the NOOP period of the pooled IMAP
// connections (0: mail's default).
func New(sessions *session.Manager, dirs Dirs, keepAlive time.Duration) *Service {
	d := &mail.Dialer{Sessions: sessions}
	return &Service{sessions: sessions, dialer: d, pool: mail.NewPool(d, keepAlive), cacheDir: dirs.Cache,
		policies: map[string]*tlspolicy.Policy{}}
}

// Close stops the bridges and closes the pooled connections.
func (s *Service) Close() error { return errors.Join(s.closeBridges(), s.pool.Close()) }

// Account builds the mail account of a profile: its TLS policy (with its CA files, built once per service) and its
// certificate selection. Errors: *profile.ValidationError, *tlspolicy.CAFileError, tlspolicy.ErrUnknownPolicy.
func (s *Service) Account(p *profile.Profile) (mail.Account, error) {
	if err := p.Validate(); err != nil {
		return mail.Account{}, err
	}
	return accountOf(p, s.policy)
}

// AccountOf is Account for a one-off use (the CLI): the policy's CRL cache is cacheDir. p may be a connection
// target (profile.ValidateTarget) rather than a saved profile.
func AccountOf(p *profile.Profile, cacheDir string) (mail.Account, error) {
	if err := p.ValidateTarget(); err != nil {
		return mail.Account{}, err
	}
	return accountOf(p, func(name string, caFiles []string) (*tlspolicy.Policy, error) {
		return tlspolicy.New(tlspolicy.Name(name), caFiles, cacheDir)
	})
}

func accountOf(p *profile.Profile, policy func(name string, caFiles []string) (*tlspolicy.Policy, error)) (mail.Account, error) {
	pol, err := policy(string(p.TLSPolicy), p.CAFiles)
	if err != nil {
		return mail.Account{}, err
	}
	return mail.Account{
		Address: p.Address,
		IMAP:    p.IMAP,
		SMTP:    p.SMTP,
		Auth:    p.Login,
		Policy:  pol,
		Cert:    session.Selection{CertSHA256: p.CertSHA256},
	}, nil
}

// policy returns the TLS policy for a name and CA files, built once (its CRL cache is shared).
func (s *Service) policy(name string, caFiles []string) (*tlspolicy.Policy, error) {
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
func (s *Service) Check(ctx context.Context, p *profile.Profile, protocol string, progress func(diagnosis.Step)) *diagnosis.Report {
	a, err := s.Account(p)
	if err != nil {
		return diagnosis.Failed(diagnosis.StepDNS, fmt.Errorf("account %q: %w", p.Name, err))
	}
	return diagnosis.Run(ctx, s.sessions, diagnosis.Target{Account: a, Protocol: protocol, OnStep: progress})
}

// Folders lists the folders of a profile's mailbox on the pooled connection (one card login per card session).
func (s *Service) Folders(ctx context.Context, p *profile.Profile) ([]mail.Folder, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	return s.pool.Folders(ctx, a)
}

// Headers returns one page of a folder's message headers, newest first, and the folder's message count.
func (s *Service) Headers(ctx context.Context, p *profile.Profile, folder string, page, pageSize int) ([]mail.Header, int, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, 0, err
	}
	return s.pool.Headers(ctx, a, folder, page, pageSize)
}

// Message fetches one message (envelope, text, list of attachments) on the pooled connection, without marking it
// as read.
func (s *Service) Message(ctx context.Context, p *profile.Profile, ref mail.MessageRef) (*mail.Message, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	return s.pool.Message(ctx, a, ref)
}

// Attachment writes the decoded contents of one attachment of a message (its IMAP part number, as Message lists
// it) to w on the pooled connection, and returns the number of bytes written.
func (s *Service) Attachment(ctx context.Context, p *profile.Profile, ref mail.MessageRef, part []int, w io.Writer) (int64, error) {
	a, err := s.Account(p)
	if err != nil {
		return 0, err
	}
	return s.pool.Attachment(ctx, a, ref, part, w)
}

// SendTest sends the test message to the profile's own address; body is the text in the person's language. A test
// message that fails is a failed test: it is not kept and not sent again (see mail.Dialer.SendTest).
func (s *Service) SendTest(ctx context.Context, p *profile.Profile, body string) (*mail.Sent, error) {
	a, err := s.Account(p)
	if err != nil {
		return nil, err
	}
	d := *s.dialer
	d.TestBody = body
	return d.SendTest(ctx, a, a.Address)
}

// Discover looks up the mail servers of an address (autoconfig XML, well-known URL, DNS SRV).
func (s *Service) Discover(ctx context.Context, address string) (*autoconfig.Result, error) {
	return autoconfig.Discover(ctx, address, s.Discovery)
}

// PoolStats reports the pooled connections' dials and reuses.
func (s *Service) PoolStats() mail.PoolStats { return s.pool.Stats() }
