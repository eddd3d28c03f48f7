package diagnosis

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/words"
)

// Protocols a Target can name.
const (
	ProtocolIMAP = "imap"
	ProtocolSMTP = "smtp"
)

// Default timeouts of the ladder.
const (
	// DefaultTimeout bounds each step (and each read or write inside it).
	DefaultTimeout = 10 * time.Second
	// DefaultGreetingTimeout bounds the wait for the first server line on a plaintext connection; past it the ladder
	// probes whether the port speaks implicit TLS.
	DefaultGreetingTimeout = 5 * time.Second
	// probeTimeout bounds one follow-up probe.
	probeTimeout = 5 * time.Second
)

// Target says what one diagnosis run checks.
type Target struct {
	Account  mail.Account // server addresses, security mode, login mode, policy and certificate selection
	Protocol string       // ProtocolIMAP (ends with list) or ProtocolSMTP (ends with send)
	// SendTo is the recipient of a small test message (smtp). When empty, the send step only has the server accept
	// the envelope sender (MAIL FROM, then RSET): nothing is sent.
	SendTo string
	// Timeout bounds each step; 0 means DefaultTimeout. GreetingTimeout bounds the first plaintext line; 0 means
	// DefaultGreetingTimeout.
	Timeout, GreetingTimeout time.Duration
	// Resolver resolves the host name; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// OnStep, when set, is called with each step as soon as it is done (on the goroutine running Run), so that a
	// GUI can show the ladder live. It must not block.
	OnStep func(Step)
}

// ErrClientCertNotRequested: the handshake completed without a CertificateRequest although the login is meant to use
// the card.
var ErrClientCertNotRequested = errors.New("the server did not request a client certificate")

// ErrBadTarget: the target cannot be checked (unknown protocol, no policy, no host).
var ErrBadTarget = errors.New("invalid diagnosis target")

// Run runs the diagnosis ladder once against t on a fresh connection, and returns its report (never nil): each step
// timed, with a detail, and exactly one code. The steps are dns, connect, then for STARTTLS greeting and starttls
// before tls, for implicit TLS greeting after client_cert; then auth and list (IMAP) or send (SMTP). The ladder stops
// at the first failed step, with two exceptions that go on to the login to report what the server says: a handshake
// without a certificate request (the code is then client_cert_not_requested), and a card certificate whose issuer
// is not among the server's acceptable CAs (client_cert is marked failed, the certificate is sent anyway and the
// server decides: client_cert_ca_not_accepted when it refuses, ok when it accepts).
//
// The ladder owns its TLS handshake (tls.Client over its own connection, with t.Account.Policy.Base and
// sessions.TLSConfig), so it sees the typed errors; it disables TLS session resumption, so that every run shows the
// server's CertificateRequest. It speaks the few IMAP/SMTP commands it needs itself and logs them (see Report.Log).
// Ambiguous failures are told apart with follow-up probes on fresh connections (Probe).
//
// sessions may be nil: no card certificate is offered (checks of the server side only). Run asks the PIN through
// the manager's prompt when the card is not logged in yet. The password of t.Account never appears in the report.
// Run honours ctx; every network operation also has the step timeout.
func Run(ctx context.Context, sessions *session.Manager, t Target, lang words.Lang) *Report {
	r := newRun(sessions, t)
	err := r.ladder(ctx)
	r.close()
	r.collect()
	r.rep.finish(Classify(err, r.facts), err, lang)
	r.rep.Log = r.log.snapshot()
	r.rep.redact(r.log.secrets)
	return r.rep
}

// run is the state of one ladder run.
type run struct {
	t        Target
	srv      mail.Server
	sessions *session.Manager
	rep      *Report
	log      *protoLog
	facts    Facts
	rec      session.Record
	tf       tlspolicy.Facts
	addr     string // ip:port connected to
	raw      net.Conn
	tconn    *tls.Conn
	w        *wire
	caps     []string
	tag      int
	// noCard is the server's certificate request seen when no card is offered (sessions == nil); written during
	// the handshake, read after it returned.
	noCard struct {
		requested bool
		cas       []string
	}
}

func newRun(sessions *session.Manager, t Target) *run {
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	if t.GreetingTimeout <= 0 {
		t.GreetingTimeout = DefaultGreetingTimeout
	}
	if t.Resolver == nil {
		t.Resolver = net.DefaultResolver
	}
	r := &run{t: t, sessions: sessions, rep: newReport(), log: &protoLog{}}
	if t.Account.Password != "" {
		p := t.Account.Password
		r.log.secrets = []string{p, base64.StdEncoding.EncodeToString([]byte(p))}
	}
	if t.Protocol == ProtocolSMTP {
		r.srv = t.Account.SMTP
	} else {
		r.srv = t.Account.IMAP
	}
	return r
}

// step runs fn as the named step, timing it and appending it to the report.
func (r *run) step(name string, fn func() (string, error)) error {
	start := time.Now()
	detail, err := fn()
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		if detail != "" {
			detail += ": "
		}
		detail += err.Error()
		r.facts.Step = name
	}
	r.addStep(Step{Name: name, OK: err == nil, Ms: ms, Detail: detail})
	return err
}

// addStep appends st to the report and tells Target.OnStep.
func (r *run) addStep(st Step) {
	r.rep.Steps = append(r.rep.Steps, st)
	if r.t.OnStep != nil {
		r.t.OnStep(st)
	}
}

func (r *run) ladder(ctx context.Context) error {
	if err := r.checkTarget(); err != nil {
		r.addStep(Step{Name: StepDNS, Detail: err.Error()})
		return err
	}
	var ips []net.IP
	if err := r.step(StepDNS, func() (string, error) {
		var err error
		ips, err = r.resolve(ctx)
		return joinIPs(ips), err
	}); err != nil {
		return err
	}
	if err := r.step(StepConnect, func() (string, error) { return r.connect(ctx, ips) }); err != nil {
		return err
	}
	starttls := r.srv.Security == mail.StartTLS
	if starttls {
		if err := r.step(StepGreeting, func() (string, error) { return r.greeting(ctx, true) }); err != nil {
			return err
		}
		if err := r.step(StepStartTLS, func() (string, error) { return r.startTLS() }); err != nil {
			return err
		}
	}
	if err := r.handshake(ctx); err != nil {
		return err
	}
	certErr := r.step(StepClientCert, r.clientCert)
	if !starttls {
		if err := r.step(StepGreeting, func() (string, error) { return r.greeting(ctx, false) }); err != nil {
			return err
		}
	}
	authErr := r.step(StepAuth, r.auth)
	if errors.Is(certErr, ErrClientCertNotRequested) {
		if authErr != nil {
			return fmt.Errorf("%w; login: %w", ErrClientCertNotRequested, authErr)
		}
		return certErr
	}
	if authErr != nil {
		return authErr
	}
	if r.t.Protocol == ProtocolSMTP {
		return r.step(StepSend, r.send)
	}
	err := r.step(StepList, r.list)
	if err == nil {
		r.logout()
	}
	return err
}

func (r *run) checkTarget() error {
	switch {
	case r.t.Protocol != ProtocolIMAP && r.t.Protocol != ProtocolSMTP:
		return fmt.Errorf("%w: protocol %q", ErrBadTarget, r.t.Protocol)
	case r.t.Account.Policy == nil:
		return fmt.Errorf("%w: no TLS policy", ErrBadTarget)
	case r.srv.Host == "" || r.srv.Port <= 0 || r.srv.Port > 65535:
		return fmt.Errorf("%w: server %q port %d", ErrBadTarget, r.srv.Host, r.srv.Port)
	case r.srv.Security != mail.Implicit && r.srv.Security != mail.StartTLS:
		return fmt.Errorf("%w: security %q", ErrBadTarget, r.srv.Security)
	}
	return nil
}

func (r *run) resolve(ctx context.Context) ([]net.IP, error) {
	if ip := net.ParseIP(strings.Trim(r.srv.Host, "[]")); ip != nil {
		return []net.IP{ip}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.t.Timeout)
	defer cancel()
	addrs, err := r.t.Resolver.LookupIPAddr(ctx, r.srv.Host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		ips = append(ips, a.IP)
	}
	return ips, nil
}

func joinIPs(ips []net.IP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, " ")
}

// connect dials the resolved addresses in order (at most 3) and keeps the first connection.
func (r *run) connect(ctx context.Context, ips []net.IP) (string, error) {
	d := net.Dialer{Timeout: r.t.Timeout}
	var err error
	for i, ip := range ips {
		if i == 3 {
			break
		}
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(r.srv.Port))
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", addr); err == nil {
			r.raw, r.addr = c, addr
			r.w = newWire(c, r.log, r.t.Timeout)
			return addr + " from " + c.LocalAddr().String(), nil
		}
	}
	return "", err
}

// greeting reads the server's first line(s). On a plaintext connection, a TLS record or silence past the greeting
// timeout means the port speaks implicit TLS (silence is confirmed by a probe).
func (r *run) greeting(ctx context.Context, plaintext bool) (string, error) {
	timeout := r.t.Timeout
	if plaintext {
		timeout = r.t.GreetingTimeout
	}
	line, err := readGreeting(r.w, r.t.Protocol, timeout)
	var ge *GreetingError
	if errors.As(err, &ge) && ge.Timeout && plaintext {
		if r.reachesTLS(ctx, r.addr, false, tls.VersionTLS10, tls.VersionTLS13, allSuites()) {
			r.facts.Probe = ProbeTLSPort
			return "probe: a TLS handshake succeeds on this port", err
		}
	}
	if err != nil {
		return "", err
	}
	r.rep.Server.Greeting = printable(line)
	if caps, ok := capabilitiesFrom(line); ok && r.t.Protocol == ProtocolIMAP {
		r.setCaps(caps, !plaintext)
	}
	return printable(line), nil
}

// readGreeting reads and checks the greeting of protocol: IMAP "* OK"/"* PREAUTH", SMTP "220" (multi-line allowed).
func readGreeting(w *wire, protocol string, timeout time.Duration) (string, error) {
	_ = w.conn.SetReadDeadline(time.Now().Add(timeout))
	head, err := w.r.Peek(2)
	if len(head) >= 2 && (head[0] == 0x15 || head[0] == 0x16) && head[1] == 0x03 {
		w.log.add("S: ", fmt.Sprintf("<TLS record % x>", head))
		return "", &GreetingError{Protocol: protocol, TLS: true}
	}
	if err != nil && len(head) == 0 {
		return "", &GreetingError{Protocol: protocol, Timeout: isTimeout(err), Err: err}
	}
	line, err := w.readLine(timeout)
	if err != nil {
		return "", &GreetingError{Protocol: protocol, Line: line, Timeout: isTimeout(err), Err: err}
	}
	up := strings.ToUpper(line)
	if protocol == ProtocolIMAP {
		if strings.HasPrefix(up, "* OK") || strings.HasPrefix(up, "* PREAUTH") {
			return line, nil
		}
		return "", &GreetingError{Protocol: protocol, Line: printable(line)}
	}
	first := line
	for strings.HasPrefix(line, "220-") {
		if line, err = w.readLine(timeout); err != nil {
			return "", &GreetingError{Protocol: protocol, Line: printable(first), Err: err}
		}
	}
	if strings.HasPrefix(line, "220 ") || line == "220" {
		return first, nil
	}
	return "", &GreetingError{Protocol: protocol, Line: printable(line)}
}

// setCaps records capabilities; post-TLS ones replace the plaintext ones in the report.
func (r *run) setCaps(caps []string, afterTLS bool) {
	r.caps = caps
	if afterTLS || len(r.rep.Server.Capabilities) == 0 {
		r.rep.Server.Capabilities = append([]string{}, caps...)
	}
}

// startTLS asks for TLS on the plaintext connection (IMAP: CAPABILITY if the greeting had none, STARTTLS; SMTP:
// EHLO, STARTTLS).
func (r *run) startTLS() (string, error) {
	if err := doStartTLS(r.w, r.t.Protocol, r.caps, &r.tag, func(c []string) { r.setCaps(c, false) }); err != nil {
		return "", err
	}
	return "server ready for TLS", nil
}

// doStartTLS is the STARTTLS exchange, shared with the probes (which pass a wire without log).
func doStartTLS(w *wire, protocol string, caps []string, tag *int, setCaps func([]string)) error {
	if protocol == ProtocolSMTP {
		code, lines, err := smtpCmd(w, "EHLO "+ehloName, "EHLO "+ehloName)
		if err != nil {
			return err
		}
		if code != 250 {
			return &mail.ProtocolError{Step: StepStartTLS, Response: strings.Join(lines, " / ")}
		}
		caps = ehloCaps(lines)
		setCaps(caps)
		if !hasCap(caps, "STARTTLS") {
			return fmt.Errorf("%w (EHLO: %s)", mail.ErrStartTLSUnavailable, strings.Join(caps, " "))
		}
		code, lines, err = smtpCmd(w, "STARTTLS", "STARTTLS")
		if err != nil {
			return err
		}
		if code != 220 {
			return fmt.Errorf("%w: %s", mail.ErrStartTLSUnavailable, strings.Join(lines, " / "))
		}
		return nil
	}
	if len(caps) == 0 {
		res, err := imapCmd(w, tag, "CAPABILITY", "CAPABILITY")
		if err != nil {
			return err
		}
		caps = res.caps
		setCaps(caps)
	}
	if !hasCap(caps, "STARTTLS") {
		return fmt.Errorf("%w (CAPABILITY: %s)", mail.ErrStartTLSUnavailable, strings.Join(caps, " "))
	}
	res, err := imapCmd(w, tag, "STARTTLS", "STARTTLS")
	if err != nil {
		return err
	}
	if res.status != "OK" {
		return fmt.Errorf("%w: %s %s", mail.ErrStartTLSUnavailable, res.status, res.text)
	}
	return nil
}

// handshake runs the tls step (and, when the card cannot be used, a failed client_cert step instead).
func (r *run) handshake(ctx context.Context) error {
	pol := r.t.Account.Policy
	cfg := pol.Base(r.srv.Host, &r.tf)
	if r.sessions != nil {
		var cardErr error
		start := time.Now()
		c, id, err := r.sessions.TLSConfig(ctx, cfg, r.t.Account.Cert, &r.rec)
		if err != nil {
			cardErr = err
			r.addStep(Step{Name: StepClientCert, Ms: float64(time.Since(start).Microseconds()) / 1000,
				Detail: "card: " + err.Error()})
			r.facts.Step = StepClientCert
			return cardErr
		}
		cfg = c
		cfg.ClientSessionCache = nil // a resumed session would hide the CertificateRequest
		r.facts.CardLogin = true
		r.rep.Card = CardFacts{Reader: id.Reader, Token: id.Cert.TokenLabel, CertSHA256: hex.EncodeToString(id.Cert.SHA256[:])}
	} else {
		// no card: record the server's request ourselves and answer with no certificate
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.noCard.requested = true
			for _, raw := range cri.AcceptableCAs {
				r.noCard.cas = append(r.noCard.cas, dnString(raw))
			}
			return &tls.Certificate{}, nil
		}
	}
	return r.step(StepTLS, func() (string, error) {
		tc := tls.Client(r.raw, cfg)
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
		if err := r.w.rebind(tc); err != nil {
			return "", &mail.ProtocolError{Step: StepStartTLS, Response: err.Error(), Err: err}
		}
		cs := tc.ConnectionState()
		detail := tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
		if rs := r.tf.Snapshot().Revocation; rs.State != "" {
			detail += fmt.Sprintf(", revocation %v", rs.State)
			if rs.Source != "" {
				detail += " (" + rs.Source + ")"
			}
		}
		return detail, nil
	})
}

// dnString renders a DER distinguished name (RFC 4514 form), or its hex when it does not parse.
func dnString(raw []byte) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return hex.EncodeToString(raw)
	}
	var name pkix.Name
	name.FillFromRDNSequence(&seq)
	return name.String()
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
	r.facts.CertRequested = hf.CertRequested || r.noCard.requested
	r.facts.CertSent = hf.CertSentSHA256 != ""
	r.facts.CANotAccepted = hf.CANotAccepted
}

// clientCert is the client_cert step: what the server asked and what the card sent.
func (r *run) clientCert() (string, error) {
	hf := r.rec.Facts()
	switch {
	case r.sessions == nil && r.noCard.requested:
		return "requested (no card offered), acceptable CAs: " + strings.Join(r.noCard.cas, "; "), nil
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
	t.ClientCertRequested = hf.CertRequested || r.noCard.requested
	if hf.AcceptableCAs != nil {
		t.AcceptableCAs = hf.AcceptableCAs
	} else if r.noCard.cas != nil {
		t.AcceptableCAs = r.noCard.cas
	}
	if hf.CertSentSHA256 != "" {
		s := hf.CertSentSHA256
		t.ClientCertSent = &s
	}
	t.SignatureScheme = hf.Scheme
	t.TrustAnchor, t.Trusted = anchorFacts(snap.Anchor), trusted(r.t.Account.Policy)
}

func (r *run) close() {
	if r.tconn != nil {
		_ = r.tconn.SetDeadline(time.Now().Add(time.Second))
		_ = r.tconn.Close()
	} else if r.raw != nil {
		_ = r.raw.Close()
	}
}

// auth is the auth step: post-TLS capabilities, then the login the account's Auth mode selects.
func (r *run) auth() (string, error) {
	if r.t.Protocol == ProtocolSMTP {
		return r.smtpAuth()
	}
	return r.imapAuth()
}

// mechanism picks the login mechanism: the forced one, or for auto EXTERNAL when offered, else LOGIN, else PLAIN.
func mechanism(mode mail.Auth, offered func(string) bool) (string, bool) {
	switch mode {
	case mail.AuthExternal:
		return "EXTERNAL", offered("EXTERNAL")
	case mail.AuthLogin:
		return "LOGIN", offered("LOGIN")
	case mail.AuthPlain:
		return "PLAIN", offered("PLAIN")
	}
	for _, m := range []string{"EXTERNAL", "LOGIN", "PLAIN"} {
		if offered(m) {
			return m, true
		}
	}
	return "", false
}

func (r *run) imapAuth() (string, error) {
	if r.srv.Security == mail.StartTLS || len(r.caps) == 0 {
		// after STARTTLS the old capabilities are void (RFC 9051 section 6.2.1)
		res, err := imapCmd(r.w, &r.tag, "CAPABILITY", "CAPABILITY")
		if err != nil {
			return "", err
		}
		if res.status != "OK" {
			return "", &mail.ProtocolError{Step: StepAuth, Response: res.status + " " + res.text}
		}
		r.setCaps(res.caps, true)
	}
	offered := func(m string) bool {
		if m == "LOGIN" {
			return !hasCap(r.caps, "LOGINDISABLED")
		}
		return hasCap(r.caps, "AUTH="+m)
	}
	mech, ok := mechanism(r.t.Account.Auth, offered)
	if !ok {
		return "", &mail.AuthError{Mechanism: mech, Response: "not offered (CAPABILITY " + strings.Join(r.caps, " ") + ")",
			Err: mail.ErrMechanismNotOffered}
	}
	a := r.t.Account
	var res imapResult
	var err error
	irOK := hasCap(r.caps, "SASL-IR")
	switch mech {
	case "LOGIN":
		res, err = imapCmd(r.w, &r.tag, "LOGIN "+imapQuote(a.Address)+" "+imapQuote(a.Password), "LOGIN "+Redacted)
	case "PLAIN":
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + a.Address + "\x00" + a.Password))
		res, err = imapAuthenticate(r.w, &r.tag, "PLAIN", ir, irOK)
	default:
		res, err = imapAuthenticate(r.w, &r.tag, "EXTERNAL", "=", irOK)
	}
	if err != nil {
		return mech, err
	}
	switch res.status {
	case "OK":
		if len(res.caps) > 0 {
			r.setCaps(res.caps, true)
		}
		return mech + " accepted", nil
	case "NO":
		return "", &mail.AuthError{Mechanism: mech, Response: res.text}
	}
	return "", &mail.ProtocolError{Step: StepAuth, Response: res.status + " " + res.text}
}

// imapAuthenticate runs AUTHENTICATE with a single response ir ("=" for an empty one), as an initial response when
// the server offers SASL-IR, else after the continuation. The response is logged as Redacted.
func imapAuthenticate(w *wire, tag *int, mech, ir string, saslIR bool) (imapResult, error) {
	if saslIR {
		return imapCmd(w, tag, "AUTHENTICATE "+mech+" "+ir, "AUTHENTICATE "+mech+" "+Redacted)
	}
	res, err := imapCmd(w, tag, "AUTHENTICATE "+mech, "AUTHENTICATE "+mech)
	if err != nil || res.status != "+" {
		return res, err
	}
	if ir == "=" {
		ir = ""
	}
	if err := w.writeLine(ir, Redacted); err != nil {
		return res, err
	}
	return imapWait(w, res.tag)
}

// imapQuote quotes s as an IMAP quoted string (RFC 9051 section 4.3); CR and LF cannot appear in one.
func imapQuote(s string) string {
	s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// imapResult is the end of one IMAP command.
type imapResult struct {
	tag      string
	status   string // OK, NO, BAD, or "+" for a continuation request
	text     string
	untagged []string
	caps     []string
}

// maxUntagged bounds the untagged lines kept for one command.
const maxUntagged = 20000

// imapCmd sends "<tag> cmd" (logged as "<tag> logged") and reads until its tagged answer or a continuation.
func imapCmd(w *wire, tag *int, cmd, logged string) (imapResult, error) {
	*tag++
	t := "a" + strconv.Itoa(*tag)
	if err := w.writeLine(t+" "+cmd, t+" "+logged); err != nil {
		return imapResult{tag: t}, err
	}
	return imapWait(w, t)
}

func imapWait(w *wire, t string) (imapResult, error) {
	res := imapResult{tag: t}
	for {
		line, err := w.readIMAP()
		if err != nil {
			return res, err
		}
		if caps, ok := capabilitiesFrom(line); ok {
			res.caps = caps
		}
		switch {
		case strings.HasPrefix(line, "+"):
			res.status, res.text = "+", strings.TrimSpace(strings.TrimPrefix(line, "+"))
			return res, nil
		case strings.HasPrefix(line, t+" "):
			rest := line[len(t)+1:]
			st, text, _ := strings.Cut(rest, " ")
			res.status, res.text = strings.ToUpper(st), text
			if res.status != "OK" && res.status != "NO" && res.status != "BAD" {
				return res, &mail.ProtocolError{Step: "imap", Response: printable(line)}
			}
			return res, nil
		case strings.HasPrefix(line, "* "):
			if strings.HasPrefix(strings.ToUpper(line), "* BYE") {
				// the server closes: its reason is the answer
				res.status, res.text = "BYE", line[len("* BYE"):]
				return res, &mail.ProtocolError{Step: "imap", Response: printable(line)}
			}
			if len(res.untagged) < maxUntagged {
				res.untagged = append(res.untagged, line)
			}
		default:
			return res, &mail.ProtocolError{Step: "imap", Response: printable(line)}
		}
	}
}

// list is the IMAP list step: LIST with STATUS counts (LIST-STATUS when offered, else one STATUS per folder).
func (r *run) list() (string, error) {
	listStatus := hasCap(r.caps, "LIST-STATUS")
	cmd := `LIST "" "*"`
	if listStatus {
		cmd += " RETURN (STATUS (MESSAGES UNSEEN))"
	}
	res, err := imapCmd(r.w, &r.tag, cmd, cmd)
	if err != nil {
		return "", err
	}
	if res.status != "OK" {
		return "", &mail.ProtocolError{Step: StepList, Response: res.status + " " + res.text}
	}
	var folders []folder
	index := map[string]int{}
	applyStatus := func(lines []string) {
		for _, l := range lines {
			toks, err := parseIMAP(l)
			if err != nil {
				continue
			}
			if name, m, u, ok := parseStatusLine(toks); ok {
				if i, found := index[name]; found {
					folders[i].Messages, folders[i].Unseen = m, u
				}
			}
		}
	}
	for _, l := range res.untagged {
		toks, err := parseIMAP(l)
		if err != nil {
			return "", &mail.ProtocolError{Step: StepList, Response: printable(l), Err: err}
		}
		if f, ok := parseListLine(toks); ok {
			index[f.Name] = len(folders)
			folders = append(folders, f)
		}
	}
	applyStatus(res.untagged)
	if !listStatus {
		const maxStatus = 100
		for i, f := range folders {
			if i == maxStatus {
				break
			}
			if f.NoSelect {
				continue
			}
			cmd := "STATUS " + imapQuote(f.Name) + " (MESSAGES UNSEEN)"
			st, err := imapCmd(r.w, &r.tag, cmd, cmd)
			if err != nil {
				return "", err
			}
			applyStatus(st.untagged)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d folders", len(folders))
	for i, f := range folders {
		if i == 10 {
			fmt.Fprintf(&b, ", …")
			break
		}
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		if f.Messages >= 0 {
			fmt.Fprintf(&b, "%s%s (%d, %d unseen)", sep, printable(f.Name), f.Messages, max(f.Unseen, 0))
		} else {
			fmt.Fprintf(&b, "%s%s", sep, printable(f.Name))
		}
	}
	return b.String(), nil
}

func (r *run) logout() {
	if r.t.Protocol == ProtocolSMTP {
		_ = r.w.send("QUIT")
		_, _, _ = smtpReply(r.w)
		return
	}
	_, _ = imapCmd(r.w, &r.tag, "LOGOUT", "LOGOUT")
}

// ehloName is the name the ladder gives in EHLO.
const ehloName = "cardmail.localhost"

// smtpReply reads one SMTP reply (multi-line "250-..." until "250 ..."), RFC 5321 section 4.2.
func smtpReply(w *wire) (int, []string, error) {
	var lines []string
	for {
		line, err := w.readLine(0)
		if err != nil {
			return 0, lines, err
		}
		if len(line) < 3 {
			return 0, lines, &mail.ProtocolError{Step: "smtp", Response: printable(line)}
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 {
			return 0, lines, &mail.ProtocolError{Step: "smtp", Response: printable(line)}
		}
		lines = append(lines, strings.TrimSpace(line[3:]))
		if len(lines) > 1000 {
			return 0, lines, ErrLineTooLong
		}
		if len(line) == 3 || line[3] != '-' {
			lines[len(lines)-1] = strings.TrimSpace(line[3:])
			return code, lines, nil
		}
		lines[len(lines)-1] = strings.TrimSpace(line[4:])
	}
}

// smtpCmd sends cmd (logged as logged) and reads the reply.
func smtpCmd(w *wire, cmd, logged string) (int, []string, error) {
	if err := w.writeLine(cmd, logged); err != nil {
		return 0, nil, err
	}
	return smtpReply(w)
}

// ehloCaps turns EHLO reply lines into keywords ("STARTTLS", "AUTH=PLAIN", "AUTH=EXTERNAL", "SIZE" ...).
func ehloCaps(lines []string) []string {
	var caps []string
	for i, l := range lines {
		if i == 0 {
			continue // the greeting name
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		kw := strings.ToUpper(f[0])
		if kw == "AUTH" {
			for _, m := range f[1:] {
				caps = append(caps, "AUTH="+strings.ToUpper(m))
			}
			continue
		}
		caps = append(caps, kw)
	}
	return caps
}

func (r *run) smtpAuth() (string, error) {
	code, lines, err := smtpCmd(r.w, "EHLO "+ehloName, "EHLO "+ehloName)
	if err != nil {
		return "", err
	}
	if code != 250 {
		return "", &mail.ProtocolError{Step: StepAuth, Response: fmt.Sprintf("%d %s", code, strings.Join(lines, " / "))}
	}
	r.setCaps(ehloCaps(lines), true)
	mech, ok := mechanism(r.t.Account.Auth, func(m string) bool { return hasCap(r.caps, "AUTH="+m) })
	if !ok {
		return "", &mail.AuthError{Mechanism: mech, Response: "not offered (EHLO " + strings.Join(r.caps, " ") + ")",
			Err: mail.ErrMechanismNotOffered}
	}
	a := r.t.Account
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	switch mech {
	case "EXTERNAL":
		code, lines, err = smtpCmd(r.w, "AUTH EXTERNAL =", "AUTH EXTERNAL "+Redacted)
	case "PLAIN":
		code, lines, err = smtpCmd(r.w, "AUTH PLAIN "+b64("\x00"+a.Address+"\x00"+a.Password), "AUTH PLAIN "+Redacted)
	case "LOGIN":
		code, lines, err = smtpCmd(r.w, "AUTH LOGIN", "AUTH LOGIN")
		if err == nil && code == 334 {
			code, lines, err = smtpCmd(r.w, b64(a.Address), Redacted)
		}
		if err == nil && code == 334 {
			code, lines, err = smtpCmd(r.w, b64(a.Password), Redacted)
		}
	}
	if err != nil {
		return mech, err
	}
	switch {
	case code == 235:
		return mech + " accepted", nil
	case code >= 500 || code == 454:
		return "", &mail.AuthError{Mechanism: mech, Response: fmt.Sprintf("%d %s", code, strings.Join(lines, " "))}
	}
	return "", &mail.ProtocolError{Step: StepAuth, Response: fmt.Sprintf("%d %s", code, strings.Join(lines, " "))}
}

// testMessage is the small message of the send step (RFC 5322), with CRLF line ends and dot-stuffing not needed.
func testMessage(from, to string, now time.Time) string {
	return "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: CardMail test\r\nDate: " +
		now.Format(time.RFC1123Z) + "\r\nMessage-ID: <" + strconv.FormatInt(now.UnixNano(), 36) + ".cardmail@" + ehloName +
		">\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncardmail send-test " +
		now.UTC().Format(time.RFC3339) + "\r\n"
}

// send is the SMTP send step: MAIL FROM, then RCPT TO + DATA when a recipient is given, else RSET.
func (r *run) send() (string, error) {
	a := r.t.Account
	if strings.ContainsAny(a.Address+r.t.SendTo, "\r\n<>") {
		return "", fmt.Errorf("%w: address with a line break or angle bracket", ErrBadTarget)
	}
	expect := func(cmd string, want ...int) (string, error) {
		code, lines, err := smtpCmd(r.w, cmd, cmd)
		if err != nil {
			return "", err
		}
		for _, w := range want {
			if code == w {
				return strings.Join(lines, " "), nil
			}
		}
		return "", &mail.ProtocolError{Step: StepSend, Response: fmt.Sprintf("%s: %d %s", cmd, code, strings.Join(lines, " "))}
	}
	if _, err := expect("MAIL FROM:<"+a.Address+">", 250); err != nil {
		return "", err
	}
	if r.t.SendTo == "" {
		_, err := expect("RSET", 250)
		if err == nil {
			r.logout()
		}
		return "sender accepted, no recipient: nothing sent", err
	}
	if _, err := expect("RCPT TO:<"+r.t.SendTo+">", 250, 251); err != nil {
		return "", err
	}
	if _, err := expect("DATA", 354); err != nil {
		return "", err
	}
	msg := testMessage(a.Address, r.t.SendTo, time.Now())
	r.log.add("C: ", fmt.Sprintf("<message body omitted: %d bytes>", len(msg)))
	_ = r.w.conn.SetWriteDeadline(time.Now().Add(r.t.Timeout))
	if _, err := r.w.conn.Write([]byte(msg)); err != nil {
		return "", err
	}
	queued, err := expect(".", 250)
	if err != nil {
		return "", err
	}
	r.logout()
	return "sent to " + r.t.SendTo + ": " + queued, nil
}
