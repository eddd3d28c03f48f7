package diagnosis

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/session"
)

// cardConfig builds the handshake's configuration: the policy's base for the server, then the card's certificate
// hook from the session manager (the PIN may be asked here: bounded by ctx only, not by the step timeout), or, with
// no manager, a hook that records the server's request and sends no certificate. A card that cannot be used fails
// as the client_cert step.
func (r *run) cardConfig(ctx context.Context) (string, error) {
	cfg := r.t.Account.Policy.Base(r.srv.Host, &r.tf)
	if r.sessions == nil {
		session.WithoutCard(cfg, &r.rec)
		r.cfg = cfg
		return "", nil
	}
	c, id, err := r.sessions.TLSConfig(ctx, cfg, r.t.Account.Cert, &r.rec)
	if err != nil {
		return "card", err
	}
	c.ClientSessionCache = nil // a resumed session would hide the CertificateRequest
	r.cfg = c
	r.facts.CardLogin = true
	r.rep.Card = CardFacts{Reader: id.Reader, Token: id.Cert.TokenLabel, CertSHA256: hex.EncodeToString(id.Cert.SHA256[:])}
	return "", nil
}

// handshake is the tls step: the ladder's own TLS handshake on its socket (after STARTTLS too), then the protocol
// client on the TLS connection. A hang-up right after the ClientHello is told apart by probes.
func (r *run) handshake(ctx context.Context) (string, error) {
	tc := tls.Client(r.raw, r.cfg)
	hctx, cancel := context.WithTimeout(ctx, r.t.Timeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	r.noteCertFacts()
	if err != nil {
		err = r.rec.Explain(err)
		r.tf.RecordError(err)
		if isHangUp(err) && !r.facts.CertRequested {
			r.facts.Probe = r.probeHandshake(ctx)
			return probeDetail(r.facts.Probe), err
		}
		return "", err
	}
	r.tconn = tc
	r.facts.HandshakeDone = true
	r.talk.open(tc, r.srv.Security == profile.StartTLS)
	cs := tc.ConnectionState()
	detail := tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	if rs := r.tf.Snapshot().Revocation; rs.State != "" {
		detail += fmt.Sprintf(", revocation %v", rs.State)
		if rs.Source != "" {
			detail += " (" + rs.Source + ")"
		}
	}
	return detail, nil
}

func probeDetail(p Probe) string {
	switch p {
	case ProbeOtherSuites:
		return "probe: the server accepts the same versions with other cipher suites"
	case ProbeOtherVersion:
		return "probe: the server accepts other TLS versions"
	}
	return "probe: no TLS version or suite Go knows is accepted"
}

// noteCertFacts copies the client-certificate side of the handshake into the classifier's facts.
func (r *run) noteCertFacts() {
	hf := r.rec.Facts()
	r.facts.CertRequested = hf.CertRequested
	r.facts.CertSent = hf.CertSentSHA256 != ""
	r.facts.CANotAccepted = hf.CANotAccepted
}

// clientCert is the client_cert step: what the server asked and what the card sent.
func (r *run) clientCert(context.Context) (string, error) {
	hf := r.rec.Facts()
	switch {
	case r.sessions == nil && hf.CertRequested:
		return "requested (no card offered), acceptable CAs: " + strings.Join(hf.AcceptableCAs, "; "), nil
	case r.sessions == nil:
		return "no card offered", nil
	case !hf.CertRequested:
		return "", ErrClientCertNotRequested
	}
	detail := "requested"
	if len(hf.AcceptableCAs) > 0 {
		detail += ", acceptable CAs: " + strings.Join(hf.AcceptableCAs, "; ")
	}
	if hf.CertSentSHA256 != "" {
		detail += ", sent " + hf.CertSentSHA256
	}
	if hf.Scheme != "" {
		detail += " signed " + hf.Scheme
	}
	if hf.CANotAccepted {
		return detail, errCANotListed
	}
	return detail, nil
}

var errCANotListed = errors.New("the card certificate's issuer is not among the acceptable CAs (sent anyway: the server decides)")

// collect fills the report's TLS facts.
func (r *run) collect() {
	t := &r.rep.TLS
	snap := r.tf.Snapshot()
	if r.tconn != nil {
		cs := r.tconn.ConnectionState()
		t.Version, t.CipherSuite = versionName(cs.Version), suiteName(cs.CipherSuite)
		chain := cs.PeerCertificates
		if len(cs.VerifiedChains) > 0 {
			chain = cs.VerifiedChains[0]
		}
		t.ServerChain = certFacts(chain)
	} else {
		t.Version, t.CipherSuite = versionName(snap.Version), suiteName(snap.CipherSuite)
		t.ServerChain = certFacts(snap.ServerChain)
	}
	hf := r.rec.Facts()
	t.ClientCertRequested = hf.CertRequested
	if hf.AcceptableCAs != nil {
		t.AcceptableCAs = hf.AcceptableCAs
	}
	if hf.CertSentSHA256 != "" {
		s := hf.CertSentSHA256
		t.ClientCertSent = &s
	}
	t.SignatureScheme = hf.Scheme
	t.TrustAnchor, t.Trusted = anchorFacts(snap.Anchor), trusted(r.t.Account.Policy)
}
