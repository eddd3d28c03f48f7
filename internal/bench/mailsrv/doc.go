// Package mailsrv runs real mail servers and deliberately misconfigured servers on 127.0.0.1 for CardMail's tests.
//
// StartDovecot starts a Dovecot 2.3 (IMAP and submission, client certificate required, SASL EXTERNAL, CRL) with a
// private Postfix that relays submissions back into Dovecot by LMTP, so that a message sent by SMTP is found by IMAP.
// Scenarios lists one server per diagnosis code this package can produce (openssl s_server, Go TLS servers, a Go
// IMAP stub, an OCSP responder, a CRL HTTP server), each stopped by t.Cleanup.
//
// Everything listens on 127.0.0.1 only, on ports chosen free at start. A missing dovecot, postfix or openssl binary
// fails the test with what to install (scripts/install-deps.sh); nothing is skipped.
//
// Dovecot penalises failed logins: after an authentication failure from 127.0.0.1 it delays further logins from that
// address by about 4 s (auth penalty, and a 2 s auth_failure_delay on the failing reply itself). Keep failing logins
// out of timing measurements, or give them their own Dovecot (DovecotOptions.NoFailureDelay removes the per-reply
// delay; the penalty is per Dovecot instance).
package mailsrv
