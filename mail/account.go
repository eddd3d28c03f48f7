package mail

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
)

// Account is a mailbox reached with the card.
type Account struct {
	Address    string // mailbox address: LOGIN/PLAIN user name, and the SMTP envelope sender
	IMAP, SMTP profile.Server
	// Auth is how to log in after TLS; "" means profile.LoginAuto: SASL EXTERNAL (the card certificate) when the
	// server advertises it, else LOGIN with the account's address and password, else PLAIN. The others do exactly
	// what they name and fail with *AuthError when the server refuses.
	Auth     profile.Login
	Password string // may be empty (operator-defined); never logged, never in errors or reports
	Policy   *tlspolicy.Policy
	Cert     session.Selection
	// Sessions is the session manager of the account's PKCS#11 module; nil means the Dialer's.
	Sessions *session.Manager
}

// String describes the account without its password.
func (a Account) String() string {
	return fmt.Sprintf("%s imap=%s/%s smtp=%s/%s auth=%s", a.Address, a.IMAP.Addr(), a.IMAP.Security, a.SMTP.Addr(),
		a.SMTP.Security, a.auth())
}

// GoString keeps the password out of %#v.
func (a Account) GoString() string { return "mail.Account{" + a.String() + "}" }

func (a Account) auth() profile.Login {
	if a.Auth == "" {
		return profile.LoginAuto
	}
	return a.Auth
}

// check validates the parts of a that a connection to srv needs.
func (a Account) check(srv profile.Server) error {
	switch {
	case a.Policy == nil:
		return &ConfigError{Field: "Policy", Value: ""}
	case strings.TrimSpace(srv.Host) == "":
		return &ConfigError{Field: "Host", Value: srv.Host}
	case srv.Port <= 0 || srv.Port > 65535:
		return &ConfigError{Field: "Port", Value: strconv.Itoa(srv.Port)}
	case srv.Security != profile.Implicit && srv.Security != profile.StartTLS:
		return &ConfigError{Field: "Security", Value: string(srv.Security)}
	}
	switch a.auth() {
	case profile.LoginAuto, profile.LoginExternal, profile.LoginLogin, profile.LoginPlain:
	default:
		return &ConfigError{Field: "Auth", Value: string(a.Auth)}
	}
	if strings.ContainsAny(a.Address, "\r\n") {
		return &ConfigError{Field: "Address", Value: strconv.Quote(a.Address)}
	}
	return nil
}
