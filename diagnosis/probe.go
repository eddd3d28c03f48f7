package diagnosis

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/cardmail/cardmail/profile"
)

// errProbeDone ends a probe handshake as soon as it proved what it had to.
var errProbeDone = errors.New("probe: server hello received")

// allSuites lists every TLS 1.0–1.2 cipher suite Go implements, secure or not (probes only: never for mail).
func allSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}

// probeHandshake runs after the server hung up right after our ClientHello. It asks, on fresh connections, whether
// the server answers the policy's versions with every suite Go knows (then the suites were the problem), or other
// TLS versions (then the version was). The probes verify the server certificate like any connection (never
// InsecureSkipVerify) and send no client certificate; reaching the server's certificate is all they need.
func (r *run) probeHandshake(ctx context.Context) Probe {
	pol := r.t.Account.Policy
	minV, maxV := pol.MinVersion, pol.MaxVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	if maxV == 0 {
		maxV = tls.VersionTLS13
	}
	starttls := r.srv.Security == profile.StartTLS
	if minV <= tls.VersionTLS12 && r.reachesTLS(ctx, r.addr, starttls, minV, min(maxV, tls.VersionTLS12), allSuites()) {
		return ProbeOtherSuites
	}
	if minV > tls.VersionTLS10 && r.reachesTLS(ctx, r.addr, starttls, tls.VersionTLS10, minV-1, allSuites()) {
		return ProbeOtherVersion
	}
	if maxV < tls.VersionTLS13 && r.reachesTLS(ctx, r.addr, starttls, maxV+1, tls.VersionTLS13, nil) {
		return ProbeOtherVersion
	}
	return ProbeNone
}

// reachesTLS reports whether a TLS handshake with versions [minV, maxV] and suites gets as far as the server's
// certificate on a fresh connection to addr (after STARTTLS when starttls is set).
func (r *run) reachesTLS(ctx context.Context, addr string, starttls bool, minV, maxV uint16, suites []uint16) bool {
	ctx, cancel := context.WithTimeout(ctx, min(probeTimeout, r.t.Timeout))
	defer cancel()
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })() // cancellation ends the probe at once
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if starttls {
		_, greeting, err := readGreeting(c, r.t.Protocol, time.Until(deadlineOf(ctx)))
		if err != nil {
			return false
		}
		if _, err := startTLS(c, r.t.Protocol, greeting, r.srv.Host, nil, deadlineOf(ctx)); err != nil {
			return false
		}
	}
	var reached atomic.Bool
	cfg := &tls.Config{
		ServerName:   r.srv.Host,
		RootCAs:      r.t.Account.Policy.Roots,
		MinVersion:   minV,
		MaxVersion:   maxV,
		CipherSuites: suites,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			reached.Store(true)
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(tls.ConnectionState) error {
			reached.Store(true)
			return errProbeDone
		},
	}
	err = tls.Client(c, cfg).HandshakeContext(ctx)
	var cve *tls.CertificateVerificationError
	return reached.Load() || err == nil || errors.As(err, &cve)
}

func deadlineOf(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(probeTimeout)
}
