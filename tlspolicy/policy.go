// Package tlspolicy holds CardMail's TLS policies for mail servers: protocol versions, cipher suites, trust anchors
// and server-certificate verification with revocation checking (stapled OCSP, OCSP, CRL with an on-disk cache of the
// last valid CRL).
//
// Two policies exist. "default" allows TLS 1.2 and 1.3 with Go's default cipher suites and trusts the system roots
// plus the profile's CA files; revocation is checked when the certificate names a source, and an unknown status never
// fails the connection. "mssante" follows the French secure health messaging rules (Référentiel #2 "Clients de
// messageries", ANS): TLS 1.2 only (ECO.1.1.2), cipher suites 0xC030 (ECDHE-RSA-AES256-GCM-SHA384) and 0xC02F
// (ECDHE-RSA-AES128-GCM-SHA256) (ECO.1.1.3), trust = the IGC-Santé roots bundled in CardMail plus the CA files the
// profile names explicitly, never the system roots (ECO.1.1.10: IGC-Santé is the only authority allowed), and
// revocation must be proven (good) for every checked certificate (ECO.1.1.6, ECO.1.1.7).
//
// The bundled roots (assets/roots, see [BundledRoots]) are the IGC-Santé root that anchors the certificates of
// MSSanté operators' servers: AC RACINE IGC-SANTE ELEMENTAIRE, which certifies AC IGC-SANTE ELEMENTAIRE
// ORGANISATIONS, the issuing authority of the IGC-Santé "SERV SSL" server certificates. Every verified connection
// records which anchor its chain ends at and where that anchor comes from ([Anchor]), so that a report tells a
// chain anchored in a CA file the profile added from one anchored in the bundled roots.
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
	"crypto/sha256"
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
	// MSSante: TLS 1.2 only, suites 0xC030 and 0xC02F, bundled IGC-Santé roots + CA files (no system roots),
	// revocation required.
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
	Roots                  *x509.CertPool // default: system roots + CAFiles; mssante: bundled IGC-Santé roots + CAFiles
	CAFiles                []string
	SystemRoots            bool // Roots include the system's roots (default: true; mssante: false)
	RequireRevocation      bool // mssante: true

	// Revocation checks server certificates; New sets it up with cacheDir. Tests may adjust its fields before use.
	Revocation *Checker

	anchors []Anchor // the bundled and CA file anchors, in the order they were added (see Anchors)
}

// AnchorSource says where a trust anchor comes from.
type AnchorSource string

// The anchor sources.
const (
	AnchorSystem  AnchorSource = "system"    // the operating system's roots (default policy)
	AnchorBundled AnchorSource = "igc_sante" // an IGC-Santé root bundled in CardMail (mssante policy)
	AnchorCAFile  AnchorSource = "ca_file"   // a CA file the profile (or --ca) names explicitly
)

// Anchor is a trust anchor and where it comes from.
type Anchor struct {
	Source AnchorSource
	Path   string            // the CA file (AnchorCAFile) or the bundled file name (AnchorBundled)
	Cert   *x509.Certificate // the anchor certificate (for AnchorSystem: the system root the chain ended at)
}

// New returns the policy called name: "default" trusts the system roots and every certificate of caFiles;
// "mssante" trusts the bundled IGC-Santé roots and every certificate of caFiles, and not the system roots. CRLs are
// cached under cacheDir ("" disables the cache).
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
	pool := x509.NewCertPool()
	switch name {
	case Default:
		p.MaxVersion = tls.VersionTLS13
		p.SystemRoots = true
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, &RootsError{What: "system", Err: err}
		}
		pool = sys
	case MSSante:
		p.MaxVersion = tls.VersionTLS12
		p.CipherSuites = slices.Clone(MSSanteCipherSuites)
		p.RequireRevocation = true
		bundled, err := bundledAnchors()
		if err != nil {
			return nil, err
		}
		p.anchors = bundled
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownPolicy, name)
	}
	for _, path := range caFiles {
		certs, err := LoadCAFile(path)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			p.anchors = append(p.anchors, Anchor{Source: AnchorCAFile, Path: path, Cert: c})
		}
	}
	for _, a := range p.anchors {
		pool.AddCert(a.Cert)
	}
	p.Roots = pool
	return p, nil
}

// Anchors returns the anchors the policy adds to or instead of the system roots: the bundled IGC-Santé roots
// (mssante), then the certificates of each CA file. The system roots are not listed (see SystemRoots).
func (p *Policy) Anchors() []Anchor { return slices.Clone(p.anchors) }

// AnchorOf says where the trust anchor c (the last certificate of a verified chain) comes from: a CA file or a
// bundled root of this policy (matched by the SHA-256 of its DER; a CA file wins over the same bundled root), else
// the system roots when the policy trusts them. ok is false when c is none of the policy's anchors.
func (p *Policy) AnchorOf(c *x509.Certificate) (a Anchor, ok bool) {
	if c == nil {
		return Anchor{}, false
	}
	sum := sha256.Sum256(c.Raw)
	for _, x := range p.anchors {
		if sha256.Sum256(x.Cert.Raw) == sum && (!ok || x.Source == AnchorCAFile) {
			a, ok = x, true
		}
	}
	if !ok && p.SystemRoots {
		a, ok = Anchor{Source: AnchorSystem, Cert: c}, true
	}
	return a, ok
}

// bundledRoots is where BundledRoots reads; tests replace it.
var bundledRoots fs.FS = assets.Roots

// BundledRoots returns the IGC-Santé roots embedded in the binary (assets.Roots, roots/*.pem), checked like CA files.
func BundledRoots() ([]*x509.Certificate, error) {
	anchors, err := bundledAnchors()
	if err != nil {
		return nil, err
	}
	out := make([]*x509.Certificate, len(anchors))
	for i, a := range anchors {
		out[i] = a.Cert
	}
	return out, nil
}

func bundledAnchors() ([]Anchor, error) {
	names, err := fs.Glob(bundledRoots, "roots/*.pem")
	if err != nil {
		return nil, &RootsError{What: "bundled", Err: err}
	}
	var all []Anchor
	for _, n := range names {
		data, err := fs.ReadFile(bundledRoots, n)
		if err != nil {
			return nil, &RootsError{What: n, Err: err}
		}
		certs, err := ParseCAFile(data)
		if err != nil {
			return nil, &RootsError{What: n, Err: err}
		}
		for _, c := range certs {
			all = append(all, Anchor{Source: AnchorBundled, Path: n, Cert: c})
		}
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
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		chain := cs.VerifiedChains[0]
		a, _ := p.AnchorOf(chain[len(chain)-1])
		facts.setAnchor(a)
	}
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
