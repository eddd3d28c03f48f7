package mail

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
)

// Security says how a connection gets TLS.
type Security string

// Security modes.
const (
	Implicit Security = "implicit" // TLS from the first byte (IMAPS 993, SMTPS 465)
	StartTLS Security = "starttls" // plaintext greeting, then STARTTLS (IMAP 143, submission 587)
)

// Auth says how to log in after TLS.
type Auth string

// Login modes. AuthAuto uses SASL EXTERNAL (the card certificate) when the server advertises it, else LOGIN with the
// account's address and password, else PLAIN; the others do exactly what they name and fail with *AuthError when the
// server refuses.
const (
	AuthAuto     Auth = "auto"
	AuthExternal Auth = "external"
	AuthLogin    Auth = "login"
	AuthPlain    Auth = "plain"
)

// Server is one mail server endpoint.
type Server struct {
	Host     string
	Port     int
	Security Security
}

// Addr returns host:port.
func (s Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Account is a mailbox reached with the card.
type Account struct {
	Address    string // mailbox address: LOGIN/PLAIN user name, and the SMTP envelope sender
	IMAP, SMTP Server
	Auth       Auth   // "" means AuthAuto
	Password   string // may be empty (operator-defined); never logged, never in errors or reports
	Policy     *tlspolicy.Policy
	Cert       session.Selection
}

// String describes the account without its password.
func (a Account) String() string {
	return fmt.Sprintf("%s imap=%s/%s smtp=%s/%s auth=%s", a.Address, a.IMAP.Addr(), a.IMAP.Security, a.SMTP.Addr(),
		a.SMTP.Security, a.auth())
}

// GoString keeps the password out of %#v.
func (a Account) GoString() string { return "mail.Account{" + a.String() + "}" }

func (a Account) auth() Auth {
	if a.Auth == "" {
		return AuthAuto
	}
	return a.Auth
}

// check validates the parts of a that a connection to srv needs.
func (a Account) check(srv Server) error {
	switch {
	case a.Policy == nil:
		return &ConfigError{Field: "Policy", Value: ""}
	case strings.TrimSpace(srv.Host) == "":
		return &ConfigError{Field: "Host", Value: srv.Host}
	case srv.Port <= 0 || srv.Port > 65535:
		return &ConfigError{Field: "Port", Value: strconv.Itoa(srv.Port)}
	case srv.Security != Implicit && srv.Security != StartTLS:
		return &ConfigError{Field: "Security", Value: string(srv.Security)}
	}
	switch a.auth() {
	case AuthAuto, AuthExternal, AuthLogin, AuthPlain:
	default:
		return &ConfigError{Field: "Auth", Value: string(a.Auth)}
	}
	if strings.ContainsAny(a.Address, "\r\n") {
		return &ConfigError{Field: "Address", Value: strconv.Quote(a.Address)}
	}
	return nil
}
