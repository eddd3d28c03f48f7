// Package tlspolicy holds CardMail's TLS policies for mail servers: protocol versions, cipher suites, trust anchors
// and server-certificate verification with revocation checking (stapled OCSP, OCSP, CRL with an on-disk cache of the
// last valid CRL).
//
// Two policies exist. "default" allows TLS 1.2 and 1.3 with Go's default cipher suites and trusts the system roots
// plus the profile's CA files; revocation is checked when the certificate names a source, and an unknown status never
// fails the connection. "mssante" follows the French secure health messaging rules: TLS 1.2 only, cipher suites
// 0xC030 (ECDHE-RSA-AES256-GCM-SHA384) and 0xC02F (ECDHE-RSA-AES128-GCM-SHA256), trust = system roots + bundled
// IGC-Santé roots + CA files, and revocation must be proven (good) for every checked certificate.
//
// The MSSanté rules also list 0xC028 (ECDHE-RSA-AES256-CBC-SHA384) and 0xC027 (ECDHE-RSA-AES128-CBC-SHA256): Go does
// not implement 0xC028 at all and offers 0xC027 only among its "insecure" suites, so the mssante policy offers the two
// GCM suites only. A server that offers nothing but the CBC suites fails the handshake (classified cipher_mismatch).
//
// Server certificates are verified by crypto/tls itself (RootCAs + ServerName, never InsecureSkipVerify); the
// tls.Config returned by [Policy.Base] adds a VerifyConnection callback that checks the negotiated cipher suite and the
// revocation status, and records what it saw into a [Facts] for the diagnosis.
package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"

	"github.com/cardmail/cardmail/assets"
)

// Name names a TLS policy.
type Name string

// The policies.
const (
	// Default: TLS 1.2–1.3, Go's default suites, system roots + CA files, revocation best effort.
	Default Name = "default"
	// MSSante: TLS 1.2 only, suites 0xC030 and 0xC02F, system + IGC-Santé roots + CA files, revocation required.
	MSSante Name = "mssante"
)

// Names lists the known policy names.
var Names = []Name{Default, MSSante}

// MSSanteCipherSuites are the suites the mssante policy offers and accepts, in preference order.
var MSSanteCipherSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, // 0xC030
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, // 0xC02F
}

// Errors. They are sentinels for errors.Is; the errors returned carry data (see [RevocationError], [CipherError]).
var (
	// ErrRevoked: a certificate of the server's chain is revoked (always fails the connection).
	ErrRevoked = errors.New("tlspolicy: server certificate revoked")
	// ErrRevocationUnavailable: no source proved the status and the policy requires it.
	ErrRevocationUnavailable = errors.New("tlspolicy: revocation status unavailable")
	// ErrCipherNotAllowed: the negotiated cipher suite is not in the policy's list.
	ErrCipherNotAllowed = errors.New("tlspolicy: cipher suite not allowed by policy")
	// ErrUnknownPolicy: New was given a name that is not in Names.
	ErrUnknownPolicy = errors.New("tlspolicy: unknown policy")
)

// CipherError reports a negotiated cipher suite outside the policy's list. It unwraps to ErrCipherNotAllowed.
type CipherError struct {
	Suite  uint16 // negotiated suite
	Policy Name
}

func (e *CipherError) Error() string {
	return fmt.Sprintf("tlspolicy: cipher suite %s (0x%04X) not allowed by policy %q", tls.CipherSuiteName(e.Suite), e.Suite, e.Policy)
}

// Unwrap returns ErrCipherNotAllowed.
func (e *CipherError) Unwrap() error { return ErrCipherNotAllowed }

// RootsError reports that trust anchors could not be loaded (system pool or bundled roots).
type RootsError struct {
	What string // "system" or the bundled file name
	Err  error
}

func (e *RootsError) Error() string {
	return fmt.Sprintf("tlspolicy: loading %s roots: %v", e.What, e.Err)
}

// Unwrap returns the cause.
func (e *RootsError) Unwrap() error { return e.Err }

// Policy is a TLS policy with its trust anchors. A Policy is immutable after New (do not change its fields while
// connections use it) and safe for concurrent use.
type Policy struct {
	Name                   Name
	MinVersion, MaxVersion uint16         // default: 1.2..1.3; mssante: 1.2..1.2
	CipherSuites           []uint16       // nil = Go's defaults; mssante: 0xC030, 0xC02F
	Roots                  *x509.CertPool // system roots + bundled roots for mssante + CAFiles
	CAFiles                []string
	RequireRevocation      bool // mssante: true

	// Revocation checks server certificates; New sets it up with cacheDir. Tests may adjust its fields before use.
	Revocation *Checker
}

// New returns the policy called name, trusting the system roots, the bundled IGC-Santé roots (mssante only) and every
// certificate of caFiles. CRLs are cached under cacheDir ("" disables the cache).
//
// Errors: ErrUnknownPolicy (wrapped) for an unknown name; *CAFileError{Path, Err} for a CA file that is unreadable,
// holds no certificate, holds something else than certificates, or holds a non-CA certificate; *RootsError when the
// system or bundled roots cannot be loaded.
func New(name Name, caFiles []string, cacheDir string) (*Policy, error) {
	p := &Policy{
		Name:       name,
		MinVersion: tls.VersionTLS12,
		CAFiles:    slices.Clone(caFiles),
		Revocation: NewChecker(cacheDir),
	}
	switch name {
	case Default:
		p.MaxVersion = tls.VersionTLS13
	case MSSante:
		p.MaxVersion = tls.VersionTLS12
		p.CipherSuites = slices.Clone(MSSanteCipherSuites)
		p.RequireRevocation = true
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownPolicy, name)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, &RootsError{What: "system", Err: err}
	}
	if name == MSSante {
		certs, err := BundledRoots()
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	for _, path := range caFiles {
		certs, err := LoadCAFile(path)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	p.Roots = pool
	return p, nil
}

// BundledRoots returns the IGC-Santé roots embedded in the binary (assets.Roots, roots/*.pem), checked like CA files.
func BundledRoots() ([]*x509.Certificate, error) {
	names, err := fs.Glob(assets.Roots, "roots/*.pem")
	if err != nil {
		return nil, &RootsError{What: "bundled", Err: err}
	}
	var all []*x509.Certificate
	for _, n := range names {
		data, err := fs.ReadFile(assets.Roots, n)
		if err != nil {
			return nil, &RootsError{What: n, Err: err}
		}
		certs, err := ParseCAFile(data)
		if err != nil {
			return nil, &RootsError{What: n, Err: err}
		}
		all = append(all, certs...)
	}
	if len(all) == 0 {
		return nil, &RootsError{What: "bundled", Err: ErrNoCertificate}
	}
	return all, nil
}

// Base returns a new tls.Config for serverName with the policy's versions, suites and trust applied before the
// handshake. Server certificate verification is Go's own (RootCAs + ServerName; never InsecureSkipVerify); its
// VerifyConnection callback, called by crypto/tls only once Go's verification succeeded, records the connection into
// facts (may be nil), checks that the negotiated suite is allowed (*CipherError) and checks revocation
// (*RevocationError). The caller may set client-certificate fields (GetClientCertificate) on the returned Config and
// must keep VerifyConnection. A verification failure (*tls.CertificateVerificationError) happens before
// VerifyConnection: use [Facts.RecordError] to keep the unverified chain.
//
// The revocation check blocks the handshake for at most a few fetches of 3 s each (see [Checker]).
func (p *Policy) Base(serverName string, facts *Facts) *tls.Config {
	return &tls.Config{
		ServerName:       serverName,
		RootCAs:          p.Roots,
		MinVersion:       p.MinVersion,
		MaxVersion:       p.MaxVersion,
		CipherSuites:     slices.Clone(p.CipherSuites),
		VerifyConnection: func(cs tls.ConnectionState) error { return p.verifyConnection(cs, facts) },
	}
}

// verifyConnection is the VerifyConnection callback of Base.
func (p *Policy) verifyConnection(cs tls.ConnectionState, facts *Facts) error {
	facts.record(cs)
	if err := p.CheckSuite(cs.CipherSuite); err != nil {
		facts.setVerifyErr(err)
		return err
	}
	var chain []*x509.Certificate
	if len(cs.VerifiedChains) > 0 {
		chain = cs.VerifiedChains[0]
	} else {
		chain = cs.PeerCertificates // not reached with Go's verification on; kept so a misuse is not silently good
	}
	statuses := p.Revocation.CheckChain(chain, cs.OCSPResponse)
	overall, err := p.Decide(statuses)
	facts.setRevocation(overall, statuses, err)
	return err
}

// CheckSuite returns *CipherError when suite is not allowed by the policy (nil CipherSuites allows Go's defaults).
func (p *Policy) CheckSuite(suite uint16) error {
	if p.CipherSuites == nil {
		return nil
	}
	if !slices.Contains(p.CipherSuites, suite) {
		return &CipherError{Suite: suite, Policy: p.Name}
	}
	return nil
}

// Decide turns the per-certificate statuses of a chain (leaf first, as returned by [Checker.CheckChain]) into the
// status that describes the connection and the error VerifyConnection returns:
//   - any revoked certificate → that status and *RevocationError{Kind: ErrRevoked}, whatever the policy;
//   - RequireRevocation and any status not good → that status and *RevocationError{Kind: ErrRevocationUnavailable};
//   - otherwise the leaf's status and nil.
//
// An empty list is unknown (and fails when RequireRevocation).
func (p *Policy) Decide(statuses []RevocationStatus) (RevocationStatus, error) {
	for i, s := range statuses {
		if s.State == Revoked {
			return s, &RevocationError{Kind: ErrRevoked, Source: s.Source, Depth: i, Err: s.Err}
		}
	}
	if len(statuses) == 0 {
		s := RevocationStatus{State: Unknown, Err: ErrNoChain}
		if p.RequireRevocation {
			return s, &RevocationError{Kind: ErrRevocationUnavailable, Err: s.Err}
		}
		return s, nil
	}
	if p.RequireRevocation {
		for i, s := range statuses {
			if s.State != Good {
				return s, &RevocationError{Kind: ErrRevocationUnavailable, Source: s.Source, Depth: i, Err: s.Err}
			}
		}
	}
	return statuses[0], nil
}

// httpClient is the client of a Checker: no cookies, only http/https redirects (at most 3).
func httpClient() *http.Client {
	return &http.Client{
		Timeout: FetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return ErrTooManyRedirects
			}
			return checkURLScheme(req.URL)
		},
	}
}
