package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"sync"
)

// Facts records what the handshake showed about the server, for the diagnosis. It is filled by the VerifyConnection
// callback of [Policy.Base], i.e. as soon as the server's certificate is verified, so the facts stay available when
// the handshake fails afterwards (client certificate rejected, cipher refused by the policy, revocation).
//
// Facts is safe for concurrent use; read it with [Facts.Snapshot] while a handshake may still run. The exported
// fields mirror the contract and are written only under the lock. A nil *Facts records nothing.
type Facts struct {
	mu sync.Mutex

	Version, CipherSuite uint16
	ServerName           string
	ServerChain          []*x509.Certificate // verified chain (leaf first), or the unverified one from RecordError
	OCSPStapled          bool
	Revocation           RevocationStatus   // the decisive status (see Policy.Decide)
	ChainRevocation      []RevocationStatus // one per checked certificate, leaf first
	VerifyErr            error              // the error VerifyConnection returned (*CipherError, *RevocationError) or nil
	Verified             bool               // VerifyConnection ran: Go accepted the chain and host name
	Anchor               Anchor             // the trust anchor the verified chain ends at, and where it comes from
}

// FactsSnapshot is a copy of Facts without the lock.
type FactsSnapshot struct {
	Version, CipherSuite uint16
	ServerName           string
	ServerChain          []*x509.Certificate
	OCSPStapled          bool
	Revocation           RevocationStatus
	ChainRevocation      []RevocationStatus
	VerifyErr            error
	Verified             bool
	Anchor               Anchor
}

// Snapshot returns a copy of the facts (slices copied; certificates shared, they are immutable). A nil *Facts gives
// the zero snapshot.
func (f *Facts) Snapshot() FactsSnapshot {
	if f == nil {
		return FactsSnapshot{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return FactsSnapshot{
		Version:         f.Version,
		CipherSuite:     f.CipherSuite,
		ServerName:      f.ServerName,
		ServerChain:     slices.Clone(f.ServerChain),
		OCSPStapled:     f.OCSPStapled,
		Revocation:      f.Revocation,
		ChainRevocation: slices.Clone(f.ChainRevocation),
		VerifyErr:       f.VerifyErr,
		Verified:        f.Verified,
		Anchor:          f.Anchor,
	}
}

// Reset clears the facts, for reuse across connection attempts.
func (f *Facts) Reset() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Version, f.CipherSuite, f.ServerName = 0, 0, ""
	f.ServerChain, f.OCSPStapled, f.Revocation, f.ChainRevocation = nil, false, RevocationStatus{}, nil
	f.VerifyErr, f.Verified, f.Anchor = nil, false, Anchor{}
}

// RecordError keeps what a failed handshake error tells about the server when VerifyConnection never ran: the
// unverified chain of a *tls.CertificateVerificationError. It changes nothing when the facts already hold a chain or
// when err carries no chain.
func (f *Facts) RecordError(err error) {
	var cve *tls.CertificateVerificationError
	if f == nil || !errors.As(err, &cve) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ServerChain) == 0 {
		f.ServerChain = slices.Clone(cve.UnverifiedCertificates)
	}
}

func (f *Facts) record(cs tls.ConnectionState) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Version, f.CipherSuite, f.ServerName = cs.Version, cs.CipherSuite, cs.ServerName
	if len(cs.VerifiedChains) > 0 {
		f.ServerChain = slices.Clone(cs.VerifiedChains[0])
	} else {
		f.ServerChain = slices.Clone(cs.PeerCertificates)
	}
	f.OCSPStapled = len(cs.OCSPResponse) > 0
	f.Verified = true
	f.Revocation, f.ChainRevocation, f.VerifyErr, f.Anchor = RevocationStatus{}, nil, nil, Anchor{}
}

func (f *Facts) setAnchor(a Anchor) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Anchor = a
}

func (f *Facts) setVerifyErr(err error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.VerifyErr = err
}

func (f *Facts) setRevocation(overall RevocationStatus, chain []RevocationStatus, err error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Revocation, f.ChainRevocation, f.VerifyErr = overall, slices.Clone(chain), err
}
