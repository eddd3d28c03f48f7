package diagnosis

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/version"
)

// Step names of the ladder, in the order they can run (implicit TLS runs tls and client_cert before greeting).
const (
	StepDNS        = "dns"
	StepConnect    = "connect"
	StepGreeting   = "greeting"
	StepStartTLS   = "starttls"
	StepTLS        = "tls"
	StepClientCert = "client_cert"
	StepAuth       = "auth"
	StepList       = "list"
	StepSend       = "send"
)

// Step is one rung of the ladder: its name, whether it succeeded, how long it took and a technical detail.
type Step struct {
	Name   string  `json:"step"`
	OK     bool    `json:"ok"`
	Ms     float64 `json:"ms"`
	Detail string  `json:"detail"`
}

// CertFacts describes one certificate of the server's chain.
type CertFacts struct {
	Subject  string `json:"subject"`
	Issuer   string `json:"issuer"`
	NotAfter string `json:"not_after"` // RFC 3339, UTC
	SHA256   string `json:"sha256"`    // hex of the DER
}

// TLSFacts is what the handshake showed.
type TLSFacts struct {
	Version             string      `json:"version"`      // "TLS 1.2", "" when no handshake completed
	CipherSuite         string      `json:"cipher_suite"` // IANA name
	ServerChain         []CertFacts `json:"server_chain"`
	ClientCertRequested bool        `json:"client_cert_requested"`
	AcceptableCAs       []string    `json:"acceptable_cas"`
	ClientCertSent      *string     `json:"client_cert_sent"` // hex SHA-256 of the card certificate sent, or null
	SignatureScheme     string      `json:"signature_scheme"` // the scheme the card signed with
	// TrustAnchor is the anchor the verified server chain ends at, and where CardMail got it; null when no chain
	// was verified.
	TrustAnchor *AnchorFacts `json:"trust_anchor"`
	// Trusted lists what the policy trusted, for the text report: "system roots", the bundled IGC-Santé roots and
	// each CA file the profile names (not in the JSON).
	Trusted []string `json:"-"`
}

// AnchorFacts names a trust anchor and its origin: Source "igc_sante" (a root bundled in CardMail), "ca_file" (a
// CA file the profile or --ca names explicitly; Path is that file) or "system" (the operating system's roots).
type AnchorFacts struct {
	Source  string `json:"source"`
	Path    string `json:"path,omitempty"`
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// anchorFacts describes the anchor of a verified chain; nil when there is none.
func anchorFacts(a tlspolicy.Anchor) *AnchorFacts {
	if a.Cert == nil {
		return nil
	}
	sum := sha256.Sum256(a.Cert.Raw)
	path := a.Path
	if a.Source == tlspolicy.AnchorBundled {
		path = "" // an embedded file name means nothing to IT
	}
	return &AnchorFacts{Source: string(a.Source), Path: path, Subject: a.Cert.Subject.String(), SHA256: hex.EncodeToString(sum[:])}
}

// trusted lists the trust of policy p for the text report.
func trusted(p *tlspolicy.Policy) []string {
	if p == nil {
		return nil
	}
	var out []string
	if p.SystemRoots {
		out = append(out, "system roots")
	}
	for _, a := range p.Anchors() {
		s := string(a.Source) + ": " + a.Cert.Subject.String()
		if a.Source == tlspolicy.AnchorCAFile {
			s = string(a.Source) + " " + a.Path + ": " + a.Cert.Subject.String()
		}
		out = append(out, s)
	}
	return out
}

// ServerFacts is what the server said about itself.
type ServerFacts struct {
	Greeting     string   `json:"greeting"`
	Capabilities []string `json:"capabilities"`
}

// CardFacts names the card and certificate used.
type CardFacts struct {
	Reader     string `json:"reader"`
	Token      string `json:"token"`
	CertSHA256 string `json:"cert_sha256"`
}

// Report is the outcome of one diagnosis run, in the shape of the CLI and diagnosis contract. Code is the one code
// that explains a failure (OK on success); Steps, TLS, Server and Card carry the technical facts. The diagnosis
// writes no sentence for a person: Message and Remedy (the contract's plain words for Code) are empty until the edge
// that shows the report fills them in the person's language (cli and gui, through package words), before JSON or
// Text. Log is the protocol log under package mail's policy (commands and response codes; no credential, mailbox
// name, address or message text); it is part of Text but not of the contract's JSON. A report names no folder and
// no address of the account: the list step gives counts, and the account's address and the recipient are replaced
// by AddressOmitted wherever a server echoed them. Err is the technical error behind Code, nil on success.
type Report struct {
	OK      bool        `json:"ok"`
	Code    Code        `json:"code"`
	Message string      `json:"message"`
	Remedy  string      `json:"remedy"`
	Steps   []Step      `json:"steps"`
	TLS     TLSFacts    `json:"tls"`
	Server  ServerFacts `json:"server"`
	Card    CardFacts   `json:"card"`
	// CardMail is the version of CardMail that ran the check (version.String()), for IT support; in Text only, to
	// keep the JSON exactly in the contract's shape.
	CardMail string   `json:"-"`
	Log      []string `json:"-"`
	Err      error    `json:"-"`
	// Time is when the run started.
	Time time.Time `json:"-"`
}

// newReport returns an empty report with every list non-nil, so that the JSON has [] rather than null.
func newReport() *Report {
	return &Report{Steps: []Step{}, TLS: TLSFacts{ServerChain: []CertFacts{}, AcceptableCAs: []string{}},
		Server: ServerFacts{Capabilities: []string{}}, Log: []string{}, Time: time.Now(), CardMail: version.String()}
}

// finish sets the code.
func (r *Report) finish(code Code, err error) {
	r.Code, r.Err = code, err
	r.OK = code == OK
}

// Failed returns the report of a run that failed before the ladder could start (a certificate selection that
// matches nothing, for instance): one failed step with err's text, and the code Classify gives err at that step.
func Failed(step string, err error) *Report {
	r := newReport()
	r.Steps = append(r.Steps, Step{Name: step, Detail: errText(err)})
	r.finish(Classify(err, Facts{Step: step}), err)
	return r
}

// JSON returns the report as one line of JSON (no trailing newline), in the contract's shape.
func (r *Report) JSON() []byte {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen: only strings, bools, numbers
		return []byte(`{"ok":false,"code":"internal_error"}`)
	}
	return b
}

// Text renders the report for IT support: verdict, words, steps with timings, TLS, server and card facts, the
// technical error and the redacted protocol log. Labels are the JSON field names, so both renderings read alike.
func (r *Report) Text() string {
	var b strings.Builder
	verdict := "FAILED"
	if r.OK {
		verdict = "OK"
	}
	fmt.Fprintf(&b, "%s (%s) %s — CardMail %s\n", verdict, r.Code, r.Time.Format(time.RFC3339), r.CardMail)
	for _, w := range []string{r.Message, r.Remedy} {
		if w != "" {
			fmt.Fprintf(&b, "%s\n", w)
		}
	}
	b.WriteString("\n")
	b.WriteString("steps:\n")
	for _, s := range r.Steps {
		mark := "ok  "
		if !s.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %-11s %9.1f ms  %s\n", mark, s.Name, s.Ms, s.Detail)
	}
	if r.Err != nil {
		fmt.Fprintf(&b, "error: %s\n", errText(r.Err))
	}
	t := r.TLS
	b.WriteString("\ntls:\n")
	fmt.Fprintf(&b, "  version: %s\n  cipher_suite: %s\n", orDash(t.Version), orDash(t.CipherSuite))
	for i, c := range t.ServerChain {
		fmt.Fprintf(&b, "  server_chain[%d]: subject=%s issuer=%s not_after=%s sha256=%s\n", i, c.Subject, c.Issuer,
			c.NotAfter, c.SHA256)
	}
	fmt.Fprintf(&b, "  client_cert_requested: %t\n", t.ClientCertRequested)
	for _, ca := range t.AcceptableCAs {
		fmt.Fprintf(&b, "  acceptable_ca: %s\n", ca)
	}
	sent := "-"
	if t.ClientCertSent != nil {
		sent = *t.ClientCertSent
	}
	fmt.Fprintf(&b, "  client_cert_sent: %s\n  signature_scheme: %s\n", sent, orDash(t.SignatureScheme))
	if a := t.TrustAnchor; a != nil {
		where := a.Source
		if a.Path != "" {
			where += " " + a.Path
		}
		fmt.Fprintf(&b, "  trust_anchor: %s: %s sha256=%s\n", where, a.Subject, a.SHA256)
	}
	for _, s := range t.Trusted {
		fmt.Fprintf(&b, "  trusted: %s\n", s)
	}
	fmt.Fprintf(&b, "\nserver:\n  greeting: %s\n  capabilities: %s\n", orDash(r.Server.Greeting),
		orDash(strings.Join(r.Server.Capabilities, " ")))
	fmt.Fprintf(&b, "\ncard:\n  reader: %s\n  token: %s\n  cert_sha256: %s\n", orDash(r.Card.Reader),
		orDash(r.Card.Token), orDash(r.Card.CertSHA256))
	if len(r.Log) > 0 {
		b.WriteString("\nlog:\n")
		for _, l := range r.Log {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// certFacts describes a chain.
func certFacts(chain []*x509.Certificate) []CertFacts {
	out := make([]CertFacts, 0, len(chain))
	for _, c := range chain {
		if c == nil {
			continue
		}
		sum := sha256.Sum256(c.Raw)
		out = append(out, CertFacts{Subject: c.Subject.String(), Issuer: c.Issuer.String(),
			NotAfter: c.NotAfter.UTC().Format(time.RFC3339), SHA256: hex.EncodeToString(sum[:])})
	}
	return out
}

func versionName(v uint16) string {
	if v == 0 {
		return ""
	}
	return tls.VersionName(v)
}

func suiteName(s uint16) string {
	if s == 0 {
		return ""
	}
	return tls.CipherSuiteName(s)
}

// errText is err's text, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Redacted replaces credentials in reports and in the protocol log (package mail's marker).
const Redacted = mail.Redacted

// AddressOmitted replaces the account's address and the recipient wherever a server echoed them.
const AddressOmitted = "<address>"

// redact replaces each secret (see mail.Redact) and each address (any case) in the report's strings: step
// details, log, server facts, error text.
func (r *Report) redact(secrets, addresses []string) {
	var res []*regexp.Regexp
	for _, a := range addresses {
		if a != "" {
			res = append(res, regexp.MustCompile("(?i)"+regexp.QuoteMeta(a)))
		}
	}
	clean := func(s string) string {
		s = mail.Redact(s, secrets...)
		for _, re := range res {
			s = re.ReplaceAllLiteralString(s, AddressOmitted)
		}
		return s
	}
	for i := range r.Steps {
		r.Steps[i].Detail = clean(r.Steps[i].Detail)
	}
	for i := range r.Log {
		r.Log[i] = clean(r.Log[i])
	}
	r.Server.Greeting = clean(r.Server.Greeting)
	for i := range r.Server.Capabilities {
		r.Server.Capabilities[i] = clean(r.Server.Capabilities[i])
	}
	if r.Err != nil {
		if s := errText(r.Err); clean(s) != s {
			r.Err = redactedError{text: clean(s), err: r.Err}
		}
	}
}

// redactedError keeps an error's chain (for errors.Is/As) with a redacted text.
type redactedError struct {
	text string
	err  error
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }
