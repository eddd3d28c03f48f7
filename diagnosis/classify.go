package diagnosis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/token"
)

// Probe is the outcome of the ladder's follow-up probes, which tell apart failures that look alike on the wire.
type Probe int

// Probe outcomes.
const (
	ProbeNone Probe = iota // no probe ran, or it proved nothing
	// ProbeOtherVersion: the server completes a ServerHello with TLS versions outside the policy's range (after a
	// hang-up right after our ClientHello): no common version.
	ProbeOtherVersion
	// ProbeOtherSuites: the server completes a ServerHello with the policy's versions and every suite Go knows: no
	// common cipher suite.
	ProbeOtherSuites
	// ProbeTLSPort: a TLS server answers a ClientHello on a port we expected to greet in plaintext.
	ProbeTLSPort
)

// Facts are what the ladder knew when it failed; Classify needs them where an error alone is ambiguous.
type Facts struct {
	// Step is the ladder step where the error happened ("dns", "connect", "greeting", "starttls", "tls",
	// "client_cert", "auth", "list", "send"); "" when unknown (errors from package mail carry their own step).
	Step string
	// CardLogin: the login is meant to use the card (a card certificate was offered to the handshake).
	CardLogin bool
	// HandshakeDone: the TLS handshake completed.
	HandshakeDone bool
	// CertRequested: the server sent a CertificateRequest. CertSent: the card certificate was sent.
	CertRequested, CertSent bool
	// CANotAccepted: the server listed acceptable CAs and the card certificate's issuer is not among them.
	CANotAccepted bool
	// Probe is the outcome of the follow-up probes, if any ran.
	Probe Probe
}

// GreetingError says that the first server line was not a greeting of the protocol.
type GreetingError struct {
	Protocol string // "imap" or "smtp"
	Line     string // what arrived (printable prefix); "" for nothing in time
	TLS      bool   // the bytes look like a TLS record (0x15/0x16 0x03 ...): the port speaks implicit TLS
	Timeout  bool   // nothing arrived before the greeting timeout
	Err      error  // the read error, if any
}

func (e *GreetingError) Error() string {
	switch {
	case e.TLS:
		return "greeting: the server sent a TLS record instead of a " + e.Protocol + " greeting"
	case e.Timeout:
		return "greeting: no " + e.Protocol + " greeting in time"
	case e.Err != nil:
		return "greeting: " + e.Err.Error()
	}
	return "greeting: not a " + e.Protocol + " greeting: " + quote(e.Line)
}

// Unwrap returns the read error.
func (e *GreetingError) Unwrap() error { return e.Err }

// Classify names the one code that explains err given the facts recorded about it; it is CardMail's only mapping
// from an error to a code (the ladder, the CLI and the GUI all call it). It is pure: the same inputs always give the
// same code, and it never panics. A nil err is OK, except when the card was meant for the login and the completed
// handshake never asked for it (ClientCertNotRequested). An error nothing explains is Internal, and so is a run
// cancelled by its caller.
//
// f is what the diagnosis ladder recorded. Callers that have no facts pass Facts{}: the facts then come from the
// *mail.StepError in err, if any (package mail records the step and the client-certificate side of its handshake).
//
// Order: card-side errors (packages session and token) first, then cancellation, policy errors (revocation,
// cipher), server-certificate verification, name resolution and connection, wrong security mode, STARTTLS, TLS
// alerts and hang-ups (using the client-certificate facts and probes), login refusals, protocol errors, timeouts.
func Classify(err error, f Facts) Code {
	if f == (Facts{}) {
		f = factsOf(err)
	}
	if err == nil {
		if f.CardLogin && f.HandshakeDone && !f.CertRequested {
			return ClientCertNotRequested
		}
		return OK
	}
	if c, ok := cardCode(err); ok {
		return c
	}
	if errors.Is(err, context.Canceled) {
		return Internal
	}
	switch {
	case errors.Is(err, tlspolicy.ErrRevoked):
		return ServerCertRevoked
	case errors.Is(err, tlspolicy.ErrRevocationUnavailable):
		return RevocationUnavailable
	case errors.Is(err, tlspolicy.ErrCipherNotAllowed):
		return CipherMismatch
	}
	if c, ok := classifyVerify(err); ok {
		return c
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return DNSError
	}
	if errors.Is(err, ErrClientCertNotRequested) {
		return ClientCertNotRequested
	}
	var ge *GreetingError
	if errors.As(err, &ge) {
		if alert, ok := remoteAlert(err); ok {
			return classifyAlert(alert, f)
		}
		switch {
		case ge.TLS, ge.Timeout && f.Probe == ProbeTLSPort:
			return WrongSecurityMode
		case ge.Timeout:
			return ConnectTimeout
		case ge.Line == "" && ge.Err != nil:
			return hangUp(err, f)
		}
		return ProtocolError
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return WrongSecurityMode
	}
	if errors.Is(err, mail.ErrStartTLSUnavailable) {
		return StartTLSUnavailable
	}
	if step := stepOf(err, f); step == "connect" {
		if isRefused(err) {
			return ConnectRefused
		}
		if isTimeout(err) || isUnreachable(err) {
			return ConnectTimeout
		}
	} else if isRefused(err) {
		return ConnectRefused
	}
	if alert, ok := remoteAlert(err); ok {
		return classifyAlert(alert, f)
	}
	if c, ok := classifyLocalTLS(err); ok {
		return c
	}
	var ae *mail.AuthError
	if errors.As(err, &ae) {
		return classifyAuth(ae.Response, f)
	}
	var pe *mail.ProtocolError
	if errors.As(err, &pe) {
		return ProtocolError
	}
	// Our own deadline passing is a timeout even when closing the connection at the deadline also left an EOF or
	// "use of closed network connection" in the chain (the mail layer joins both): a silent server is not a hang-up.
	if errors.Is(err, context.DeadlineExceeded) {
		return ConnectTimeout
	}
	if isHangUp(err) {
		return hangUp(err, f)
	}
	if isTimeout(err) {
		return ConnectTimeout
	}
	return Internal
}

// cardCode maps the errors of the card side (packages session and token).
func cardCode(err error) (Code, bool) {
	var pin *token.PINError
	switch {
	case errors.As(err, &pin):
		if pin.Reason == token.PINLocked || pin.TriesLeft == 0 {
			return PINLocked, true
		}
		return PINIncorrect, true
	case errors.Is(err, session.ErrPINCancelled):
		return PINCancelled, true
	case errors.Is(err, session.ErrCardAbsent):
		return CardAbsent, true
	case errors.Is(err, session.ErrCardRemoved), token.CardChanged(err):
		return CardRemoved, true
	case errors.Is(err, session.ErrWrongIdentity):
		return CardWrongIdentity, true
	case errors.Is(err, session.ErrNoUsableCertificate):
		return NoUsableCertificate, true
	case errors.Is(err, session.ErrMechanismUnsupported):
		return CardMechanismUnsupported, true
	case errors.Is(err, token.ErrTokenUnresponsive), errors.Is(err, token.ErrAgentExited), errors.Is(err, token.ErrBusy):
		return TokenUnresponsive, true
	case errors.Is(err, token.ErrModuleNotFound), errors.Is(err, token.ErrNotPKCS11):
		return ModuleNotFound, true
	}
	return "", false
}

// factsOf returns the facts a *mail.StepError in err carries: its step, and the client-certificate side of the
// connection's handshake (a mail connection always logs in with the card). No StepError: no facts.
func factsOf(err error) Facts {
	var se *mail.StepError
	if !errors.As(err, &se) {
		return Facts{}
	}
	h := se.Handshake
	afterLogin := se.Step == mail.StepAuth || se.Step == mail.StepList || se.Step == mail.StepSend ||
		se.Step == mail.StepSelect || se.Step == mail.StepFetch || se.Step == mail.StepNoop
	return Facts{Step: se.Step, CardLogin: true, HandshakeDone: afterLogin, CertRequested: h.CertRequested,
		CertSent: h.CertSentSHA256 != "", CANotAccepted: h.CANotAccepted}
}

// classifyVerify maps Go's server-certificate verification errors.
func classifyVerify(err error) (Code, bool) {
	var hn x509.HostnameError
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hn):
		return ServerCertHostname, true
	case errors.As(err, &ci):
		if ci.Reason == x509.Expired {
			return ServerCertExpired, true
		}
		return ServerCertUntrusted, true
	case errors.As(err, &ua):
		return ServerCertUntrusted, true
	case errors.As(err, &cve):
		return ServerCertUntrusted, true
	}
	return "", false
}

// classifyAuth maps a login refusal. Dovecot answers "[ALERT] Client didn't present valid SSL certificate" whether
// the certificate was missing or refused; the facts tell which.
func classifyAuth(response string, f Facts) Code {
	r := strings.ToLower(response)
	certSaid := strings.Contains(r, "ssl certificate") || strings.Contains(r, "client certificate") ||
		strings.Contains(r, "tls certificate")
	switch {
	case f.CardLogin && f.HandshakeDone && !f.CertRequested:
		return ClientCertNotRequested
	case certSaid && f.CertSent && f.CANotAccepted:
		return ClientCertCANotAccepted
	case certSaid && f.CertSent:
		return ClientCertRejected
	case certSaid && !f.CertRequested && f.HandshakeDone:
		return ClientCertNotRequested
	case certSaid:
		return ClientCertRequired
	}
	return AuthFailed
}

// Alert numbers of RFC 8446 section 6 that the diagnosis tells apart.
const (
	alertHandshakeFailure      = 40
	alertBadCertificate        = 42
	alertUnsupportedCert       = 43
	alertCertificateRevoked    = 44
	alertCertificateExpired    = 45
	alertCertificateUnknown    = 46
	alertUnknownCA             = 48
	alertAccessDenied          = 49
	alertDecryptError          = 51
	alertProtocolVersion       = 70
	alertInsufficientSecurity  = 71
	alertUnrecognizedName      = 112
	alertCertificateRequired   = 116
	alertNoApplicationProtocol = 120
)

// alertNames are crypto/tls's texts for alerts ("remote error: tls: <text>"), see crypto/tls/alert.go.
var alertNames = map[string]int{
	"handshake failure":               alertHandshakeFailure,
	"bad certificate":                 alertBadCertificate,
	"unsupported certificate":         alertUnsupportedCert,
	"revoked certificate":             alertCertificateRevoked,
	"expired certificate":             alertCertificateExpired,
	"unknown certificate":             alertCertificateUnknown,
	"unknown certificate authority":   alertUnknownCA,
	"access denied":                   alertAccessDenied,
	"error decrypting message":        alertDecryptError,
	"protocol version not supported":  alertProtocolVersion,
	"insufficient security level":     alertInsufficientSecurity,
	"unrecognized name":               alertUnrecognizedName,
	"certificate required":            alertCertificateRequired,
	"no application protocol":         alertNoApplicationProtocol,
	"illegal parameter":               47,
	"decode error":                    50,
	"internal error":                  80,
	"unexpected message":              10,
	"bad record MAC":                  20,
	"close notify":                    0,
	"user canceled":                   90,
	"missing extension":               109,
	"unsupported extension":           110,
	"inappropriate fallback":          86,
	"no renegotiation":                100,
	"record overflow":                 22,
	"decompression failure":           30,
	"decryption failed":               21,
	"export restriction":              60,
	"certificate unobtainable":        111,
	"bad certificate status response": 113,
	"bad certificate hash value":      114,
	"unknown PSK identity":            115,
	"ECH required":                    121,
}

// remoteAlert finds the alert a server sent. crypto/tls reports it as *net.OpError{Op: "remote error"} whose text is
// "remote error: tls: <alert>"; tls.AlertError (QUIC only) is understood too. Unknown alerts give "alert(N)".
func remoteAlert(err error) (int, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return int(ae), true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		if n, ok := alertFromText(oe.Err.Error()); ok {
			return n, true
		}
		return -1, true
	}
	const marker = "remote error: tls: "
	if i := strings.Index(err.Error(), marker); i >= 0 {
		if n, ok := alertFromText(err.Error()[i+len(marker):]); ok {
			return n, true
		}
		return -1, true
	}
	return 0, false
}

func alertFromText(s string) (int, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "tls: ")
	best, found := "", -1
	for name, n := range alertNames { // longest prefix: "bad certificate" is a prefix of other names
		if strings.HasPrefix(s, name) && len(name) > len(best) {
			best, found = name, n
		}
	}
	if found >= 0 {
		return found, true
	}
	// crypto/tls prints unknown alerts as "alert(N)".
	if strings.HasPrefix(s, "alert(") {
		n := 0
		for _, c := range s[len("alert("):] {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
			if n > 255 {
				return 0, false
			}
		}
		return n, true
	}
	return 0, false
}

// classifyAlert maps a server alert; a failure about the client certificate needs the handshake facts.
func classifyAlert(alert int, f Facts) Code {
	switch alert {
	case alertProtocolVersion:
		return TLSVersionMismatch
	case alertInsufficientSecurity:
		return CipherMismatch
	case alertCertificateRequired:
		if f.CertSent {
			return certRefused(f)
		}
		return ClientCertRequired
	case alertBadCertificate, alertUnsupportedCert, alertCertificateRevoked, alertCertificateExpired,
		alertCertificateUnknown, alertUnknownCA, alertAccessDenied, alertDecryptError:
		if !f.CertSent && f.CertRequested {
			return ClientCertRequired
		}
		return certRefused(f)
	case alertHandshakeFailure:
		if f.CertRequested {
			if f.CertSent {
				return certRefused(f)
			}
			return ClientCertRequired
		}
		if f.Probe == ProbeOtherVersion {
			return TLSVersionMismatch
		}
		return CipherMismatch
	case alertUnrecognizedName:
		return ServerCertHostname
	}
	return ProtocolError
}

func certRefused(f Facts) Code {
	if f.CANotAccepted {
		return ClientCertCANotAccepted
	}
	return ClientCertRejected
}

// hangUp classifies an EOF or reset: right after our ClientHello it is a version or suite refusal (told apart by
// the probes); after our certificate, a refusal of it; during the greeting, a protocol error.
func hangUp(err error, f Facts) Code {
	switch stepOf(err, f) {
	case "tls", "client_cert":
		if f.CertRequested {
			if f.CertSent {
				return certRefused(f)
			}
			return ClientCertRequired
		}
		if f.HandshakeDone {
			return ProtocolError
		}
		if f.Probe == ProbeOtherSuites {
			return CipherMismatch
		}
		return TLSVersionMismatch
	case "greeting", "auth":
		// TLS 1.3: a rejected certificate shows at the first read after the handshake; a server that drops the
		// connection there had asked for the certificate.
		if f.HandshakeDone && f.CertRequested {
			if f.CertSent {
				return certRefused(f)
			}
			return ClientCertRequired
		}
	}
	return ProtocolError
}

// classifyLocalTLS maps crypto/tls's own handshake errors (no alert from the server).
func classifyLocalTLS(err error) (Code, bool) {
	s := err.Error()
	switch {
	case strings.Contains(s, "tls: server selected unsupported protocol version"),
		strings.Contains(s, "tls: no supported versions satisfy"):
		return TLSVersionMismatch, true
	case strings.Contains(s, "tls: server chose an unconfigured cipher suite"),
		strings.Contains(s, "tls: no cipher suite supported by both"):
		return CipherMismatch, true
	case strings.Contains(s, "tls: first record does not look like a TLS handshake"):
		return WrongSecurityMode, true
	}
	return "", false
}

// stepOf returns the step an error is about: the one package mail recorded, else the ladder's.
func stepOf(err error, f Facts) string {
	var se *mail.StepError
	if errors.As(err, &se) {
		return se.Step
	}
	var oe *net.OpError
	if f.Step == "" && errors.As(err, &oe) && oe.Op == "dial" {
		return "connect"
	}
	return f.Step
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func isUnreachable(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

func isHangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func quote(s string) string {
	const max = 120
	if len(s) > max {
		s = s[:max] + "…"
	}
	return "\"" + printable(s) + "\""
}

// printable is how reports show server bytes (package mail's rule for its log).
func printable(s string) string { return mail.Printable(s) }
