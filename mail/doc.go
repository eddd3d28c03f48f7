// Package mail makes CardMail's production mail connections: IMAP (go-imap v2) and SMTP submission (go-smtp) over
// implicit TLS or STARTTLS, with the TLS client certificate of the smart card, then a login (SASL EXTERNAL, LOGIN or
// PLAIN), folders with counts, message headers, and a test message.
//
// Every TLS connection is built the same way: the account's tlspolicy gives the base configuration for the server
// (versions, suites, trust, revocation), the session manager adds the card (client-certificate hook, version cap for
// cards without RSA-PSS, a TLS session cache bound to the card generation), and handshake errors go through
// session.Record.Explain so that a card error stays a card error. Connections that logged in with the card are
// registered with session.Manager.Track: the manager closes them when the card is removed or changed.
//
// Every network step (connect, greeting, STARTTLS, TLS handshake, login, each command) has its own deadline
// (Dialer.Timeout) and honours the caller's context: when either ends, the connection is closed, which unblocks the
// step, and the error wraps context.DeadlineExceeded or context.Canceled.
//
// Errors keep their type and say which step failed: *StepError wraps *session.CardError, *token.PINError,
// *net.OpError, *tls.CertificateVerificationError, *tlspolicy.RevocationError, *ProtocolError, *AuthError and
// ErrStartTLSUnavailable (use errors.As / errors.Is). The account's password never appears in an error, a log line
// or a trace.
package mail
