// Package diagnosis names what went wrong with a card or a mail connection as one stable code from the CLI and
// diagnosis contract (shared/spec/cli-and-diagnosis.md), so that the CLI, the GUI and reports agree.
//
// Codes are machine-readable and never change meaning. The domain returns codes and technical facts, never
// sentences: the words for a code live in package words, and the CLI (cli/explain.go) and the GUI (gui/explain.go)
// put them in front of a person. Classify is the one function that turns an error into a code.
package diagnosis

// Code is a stable, machine-readable diagnosis code.
type Code string

// The codes of the contract. Exactly one describes a failed check.
const (
	OK                       Code = "ok"
	DNSError                 Code = "dns_error"
	ConnectRefused           Code = "connect_refused"
	ConnectTimeout           Code = "connect_timeout"
	WrongSecurityMode        Code = "wrong_security_mode"
	StartTLSUnavailable      Code = "starttls_unavailable"
	TLSVersionMismatch       Code = "tls_version_mismatch"
	CipherMismatch           Code = "cipher_mismatch"
	ServerCertUntrusted      Code = "server_cert_untrusted"
	ServerCertHostname       Code = "server_cert_hostname"
	ServerCertExpired        Code = "server_cert_expired"
	ServerCertRevoked        Code = "server_cert_revoked"
	RevocationUnavailable    Code = "revocation_unavailable"
	ClientCertNotRequested   Code = "client_cert_not_requested"
	ClientCertCANotAccepted  Code = "client_cert_ca_not_accepted"
	ClientCertRequired       Code = "client_cert_required"
	ClientCertRejected       Code = "client_cert_rejected"
	CardAbsent               Code = "card_absent"
	CardRemoved              Code = "card_removed"
	CardWrongIdentity        Code = "card_wrong_identity"
	CardMechanismUnsupported Code = "card_mechanism_unsupported"
	PINIncorrect             Code = "pin_incorrect"
	PINLocked                Code = "pin_locked"
	PINCancelled             Code = "pin_cancelled"
	TokenUnresponsive        Code = "token_unresponsive"
	ModuleNotFound           Code = "module_not_found"
	AuthFailed               Code = "auth_failed"
	ProtocolError            Code = "protocol_error"
	// NoUsableCertificate extends the contract: cards are present but none holds a certificate fit for TLS client
	// login (expired, no private key, wrong key usage), or not the one the profile names.
	NoUsableCertificate Code = "no_usable_certificate"
	// Internal is not in the contract's table: an error no check explains. Reports carry the technical text.
	Internal Code = "internal_error"
)

// All lists every code, in the contract's order; tests use it to check that each one has words.
var All = []Code{OK, DNSError, ConnectRefused, ConnectTimeout, WrongSecurityMode, StartTLSUnavailable,
	TLSVersionMismatch, CipherMismatch, ServerCertUntrusted, ServerCertHostname, ServerCertExpired, ServerCertRevoked,
	RevocationUnavailable, ClientCertNotRequested, ClientCertCANotAccepted, ClientCertRequired, ClientCertRejected,
	CardAbsent, CardRemoved, CardWrongIdentity, CardMechanismUnsupported, PINIncorrect, PINLocked, PINCancelled, TokenUnresponsive,
	ModuleNotFound, AuthFailed, ProtocolError, NoUsableCertificate, Internal}
