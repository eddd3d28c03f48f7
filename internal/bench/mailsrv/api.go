package mailsrv

import (
	"testing"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
)

// DovecotOptions tunes StartDovecot. The zero value gives an empty mailbox, the bench CA as the only client CA and
// no CRL.
type DovecotOptions struct {
	// CRLPEM is appended to the client CA file (ssl_ca), e.g. from bench.PKI.Revoke.
	CRLPEM []byte
	// RequireCRL sets ssl_require_crl: a revoked card is refused at login. Without CRLPEM nobody can log in then.
	RequireCRL bool
	// Folders pre-creates that many folders ("Folder0001" ...), a few of them with messages (Maildir++ written
	// directly, fast enough for thousands).
	Folders int
	// Messages puts that many messages in INBOX.
	Messages int
	// ClientCAPEM replaces the bench CA as the CA Dovecot trusts for client certificates (nil: pki.CAPEM).
	ClientCAPEM []byte
	// Users maps card certificates to mailboxes: Dovecot takes the certificate's subject commonName and the
	// passdb turns it into the identity's e-mail address. nil: the bench's AliceName and BrunoName with
	// bench.DefaultEmail.
	Users []*bench.Identity
	// NoExternal leaves SASL EXTERNAL out and makes LOGIN/PLAIN check a password nobody is told (every login
	// fails: the auth_failed scenario).
	NoExternal bool
	// NoFailureDelay sets auth_failure_delay to 0 (failed logins answer at once).
	NoFailureDelay bool
	// NoPostfix starts Dovecot alone: submission then has no relay and Deliver uses LMTP directly.
	NoPostfix bool
	// LongLivedLogin runs one long-lived login process per protocol (service_count = 0), a common high-performance
	// set-up, with TLS tickets left on (no ssl_options = no_ticket): Dovecot 2.3 then fails every resumed handshake
	// ("session id context uninitialized", a fatal internal_error alert; real-world.md).
	LongLivedLogin bool
}

// Dovecot is a running Dovecot started by StartDovecot. Its fields must not be modified. Methods must be called from
// the test's goroutine (they may call t.Fatal), except Log, which is safe from any goroutine.
type Dovecot struct {
	IMAPS       string // host:port, IMAP over implicit TLS
	IMAP        string // host:port, IMAP with STARTTLS (ssl=required: no login before STARTTLS)
	SubmissionS string // host:port, submission over implicit TLS
	Submission  string // host:port, submission with STARTTLS
	LMTP        string // host:port, Dovecot's LMTP (Postfix delivers there)
	SMTPRelay   string // host:port of the Postfix smtpd submission relays to ("" with NoPostfix)
	CAFile      string // PEM of the CA that signed the server certificate (trust it in clients)
	Dir         string // configuration, logs and mail (Maildir under Dir/mail/<address>)

	d *dovecotState
}

// Endpoint is where a scenario's server listens and what a client needs to reach it.
type Endpoint struct {
	Addr         string   // host:port to dial ("127.0.0.1:port", or a name under .invalid for dns_error)
	ServerName   string   // TLS server name to verify
	CAFile       string   // trust anchor for the server certificate (the bench CA unless the scenario says otherwise)
	ExtraCAFiles []string // more trust anchors the profile should carry
	Insert       bool     // the card must be in a reader (Alice's card, bench.Cards[0])
	// NoClientCert says the scenario's behaviour shows only to a client that sends no certificate (CardMail sends
	// the card's certificate whenever asked). See the scenario's name.
	NoClientCert bool
}

// Scenario is one misconfigured (or, for auth, strict) server and the diagnosis code CardMail must give against it.
type Scenario struct {
	Name     string         // unique, "<code>/<variant>"
	Want     diagnosis.Code // the code a diagnosis of this endpoint must give
	Protocol string         // "imap" | "smtp"
	Security string         // "implicit" | "starttls"
	Policy   string         // "default" | "mssante"
	// Start starts the server for t and registers its stop in t.Cleanup. It must be called from the test's
	// goroutine; b gives the PKI (and cards, which Start does not insert).
	Start func(t testing.TB, b *bench.Bench) Endpoint
}
