package mail

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/cardmail/cardmail/session"
)

// ErrStartTLSUnavailable: the server did not accept or does not offer STARTTLS.
var ErrStartTLSUnavailable = errors.New("server does not offer STARTTLS")

// StartTLSRefused returns the typed error for a server that refused STARTTLS: an IMAP NO or BAD answer, or an EHLO
// reply without STARTTLS (go-smtp says so only in text), become a *ProtocolError at StepStartTLS wrapping
// ErrStartTLSUnavailable (and the server's typed answer). Any other error is returned unchanged.
func StartTLSRefused(err error) error {
	var ie *imap.Error
	switch {
	case errors.As(err, &ie):
		return &ProtocolError{Step: StepStartTLS, Response: statusText(ie), Err: errors.Join(ErrStartTLSUnavailable, ie)}
	case err != nil && strings.Contains(err.Error(), "doesn't support STARTTLS"):
		return &ProtocolError{Step: StepStartTLS, Response: "no STARTTLS in the EHLO reply", Err: ErrStartTLSUnavailable}
	}
	return err
}

// ErrClosed: the connection or pool was closed (by its owner, or by the session manager after a card change).
var ErrClosed = errors.New("mail connection closed")

// Steps named in *StepError, aligned with the diagnosis ladder where they overlap.
const (
	StepConnect  = "connect"
	StepGreeting = "greeting"
	StepStartTLS = "starttls"
	StepTLS      = "tls"
	StepAuth     = "auth"
	StepList     = "list"
	StepSelect   = "select"
	StepFetch    = "fetch"
	StepNoop     = "noop"
	StepSend     = "send"
	StepCard     = "client_cert" // resolving the card identity before any network I/O
)

// StepError says which step of a connection failed. Err keeps its type (errors.As/Is see through StepError).
// Handshake is what the connection's TLS handshake showed on the client-certificate side when the step failed (zero
// before the handshake), so that diagnosis.Classify can tell a refused card from a missing one from the error alone.
type StepError struct {
	Step      string
	Err       error
	Handshake session.HandshakeFacts
}

func (e *StepError) Error() string { return "mail: " + e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// ProtocolError: the server answered something the step does not allow (a BAD, an unexpected reply code, a reply to
// STARTTLS that is not OK). Response is the server's text.
type ProtocolError struct {
	Step     string
	Response string
	Err      error // the underlying typed error (*imap.Error, *smtp.SMTPError), may be nil
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("protocol error at %s: %q", e.Step, e.Response)
}
func (e *ProtocolError) Unwrap() error { return e.Err }

// AuthError: the server refused the login. Mechanism is "EXTERNAL", "LOGIN" or "PLAIN"; Response is the server's
// text (for Dovecot, "[ALERT] Client didn't present valid SSL certificate" means the card certificate was missing or
// refused). It never holds the password.
type AuthError struct {
	Mechanism string
	Response  string
	Err       error // the server's typed answer (*imap.Error, *smtp.SMTPError), may be nil
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("login with %s refused: %q", e.Mechanism, e.Response)
}
func (e *AuthError) Unwrap() error { return e.Err }

// ErrMechanismNotOffered is wrapped by *AuthError when a forced login mode is not advertised by the server.
var ErrMechanismNotOffered = errors.New("login mechanism not offered by the server")

// ConfigError: an Account or Dialer field is unusable. Value never holds a password.
type ConfigError struct {
	Field, Value string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("invalid %s %q", e.Field, e.Value) }
