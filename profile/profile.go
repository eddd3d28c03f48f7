// Package profile reads, checks and stores account profiles: the settings that tell CardMail how to reach one
// mailbox (address, IMAP and SMTP servers, login method, TLS policy, trust anchors, card certificate, PKCS#11
// module). A profile is a small versioned JSON file; users keep theirs in their configuration directory and IT can
// deploy read-only presets in a system-wide directory (see Store).
//
// A profile never holds a secret: there is no PIN and no password field. A file that contains one is rejected
// (ValidationError reason "secret_not_allowed"); an operator password, when the server wants one, is asked each
// time by the caller.
//
// The types here are plain strings and ints on purpose: the mail, tlspolicy and session packages have their own
// types, and the caller converts.
package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Version is the only file format version this package reads and writes (the "version" member of the JSON).
const Version = 1

// MaxFileSize caps a profile file: a larger file is refused with ErrTooLarge before it is parsed.
const MaxFileSize = 64 << 10

// Security says how a connection gets TLS.
type Security string

// Security modes.
const (
	Implicit Security = "implicit" // TLS from the first byte (IMAPS 993, submissions 465)
	StartTLS Security = "starttls" // plaintext greeting, then STARTTLS (IMAP 143, submission 587)
)

// Login is how the client logs in once TLS is up.
type Login string

// Login methods. LoginAuto uses SASL EXTERNAL when the server offers it, else LOGIN/PLAIN with the address.
const (
	LoginAuto     Login = "auto"
	LoginExternal Login = "external"
	LoginLogin    Login = "login"
	LoginPlain    Login = "plain"
)

// TLSPolicy names a tlspolicy policy.
type TLSPolicy string

// TLS policies.
const (
	PolicyDefault TLSPolicy = "default"
	PolicyMSSante TLSPolicy = "mssante" // French secure health messaging: TLS 1.2, two suites, revocation required
)

// Server is one IMAP or SMTP endpoint. It is CardMail's one server model: profiles save it, the mail connections
// and the diagnosis dial it, discovery proposes it.
type Server struct {
	Host     string   `json:"host"`
	Port     int      `json:"port"`
	Security Security `json:"security"`
}

// Addr returns host:port.
func (s Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Profile is one account as saved on disk. The zero value is not valid; build one with FromPreset or fill every
// required field, then call Validate.
type Profile struct {
	// Version is the file format version; Marshal and Store.Save always write Version.
	Version int `json:"version"`
	// Name identifies the profile and is its file name without ".json"; see ValidName.
	Name string `json:"name"`
	// Address is the mailbox address (addr-spec "local@domain", no display name).
	Address string `json:"address"`
	IMAP    Server `json:"imap"`
	SMTP    Server `json:"smtp"`
	Login   Login  `json:"login"`
	// TLSPolicy is "default" or "mssante".
	TLSPolicy TLSPolicy `json:"tls_policy"`
	// CAFiles are extra trust anchors (PEM or DER files), absolute paths. Their contents are checked by tlspolicy,
	// not here.
	CAFiles []string `json:"ca_files,omitempty"`
	// CertSHA256 optionally selects the card certificate by the SHA-256 of its DER encoding, 64 hex digits.
	// Empty: the session manager chooses.
	CertSHA256 string `json:"cert_sha256,omitempty"`
	// PKCS11Module optionally names the PKCS#11 module (absolute path). Empty: the known places are searched.
	PKCS11Module string `json:"pkcs11_module,omitempty"`
}

// Clone returns a deep copy of p.
func (p *Profile) Clone() *Profile {
	c := *p
	c.CAFiles = append([]string(nil), p.CAFiles...)
	return &c
}

// Validate checks every field and returns the first problem as a *ValidationError, in the order the fields are
// declared; nil when p can be saved and used. It does not touch the file system (CA files and the module may be
// missing now and installed later).
func (p *Profile) Validate() error { return p.validate(false) }

// ValidateTarget is Validate for a connection target that is not saved: the command line's target flags build one.
// It may leave out the name, the address (a login by the card certificate needs none) and one of its two servers
// (a zero Server); everything it names is checked as Validate does, and at least one server is required.
func (p *Profile) ValidateTarget() error {
	if p.IMAP == (Server{}) && p.SMTP == (Server{}) {
		return &ValidationError{Field: "imap", Reason: ReasonMissing}
	}
	return p.validate(true)
}

func (p *Profile) validate(target bool) error {
	if p.Version != Version {
		return &ValidationError{Field: "version", Reason: ReasonUnsupported}
	}
	if p.Name == "" && !target {
		return &ValidationError{Field: "name", Reason: ReasonMissing}
	}
	if p.Name != "" && !ValidName(p.Name) {
		return &ValidationError{Field: "name", Reason: ReasonBadName}
	}
	if p.Address == "" && !target {
		return &ValidationError{Field: "address", Reason: ReasonMissing}
	}
	if _, _, ok := SplitAddress(p.Address); p.Address != "" && !ok {
		return &ValidationError{Field: "address", Reason: ReasonBadAddress}
	}
	for _, side := range []struct {
		name string
		srv  Server
	}{{"imap", p.IMAP}, {"smtp", p.SMTP}} {
		if target && side.srv == (Server{}) {
			continue
		}
		if err := side.srv.validate(side.name); err != nil {
			return err
		}
	}
	switch p.Login {
	case "":
		return &ValidationError{Field: "login", Reason: ReasonMissing}
	case LoginAuto, LoginExternal, LoginLogin, LoginPlain:
	default:
		return &ValidationError{Field: "login", Reason: ReasonBadLogin}
	}
	switch p.TLSPolicy {
	case "":
		return &ValidationError{Field: "tls_policy", Reason: ReasonMissing}
	case PolicyDefault, PolicyMSSante:
	default:
		return &ValidationError{Field: "tls_policy", Reason: ReasonBadPolicy}
	}
	for i, f := range p.CAFiles {
		if !absPath(f) {
			return &ValidationError{Field: "ca_files[" + strconv.Itoa(i) + "]", Reason: ReasonBadPath}
		}
	}
	if p.CertSHA256 != "" && !isHex64(p.CertSHA256) {
		return &ValidationError{Field: "cert_sha256", Reason: ReasonBadFingerprint}
	}
	if p.PKCS11Module != "" && !absPath(p.PKCS11Module) {
		return &ValidationError{Field: "pkcs11_module", Reason: ReasonBadPath}
	}
	return nil
}

func (s Server) validate(prefix string) error {
	if s.Host == "" {
		return &ValidationError{Field: prefix + ".host", Reason: ReasonMissing}
	}
	if !ValidHost(s.Host) {
		return &ValidationError{Field: prefix + ".host", Reason: ReasonBadHost}
	}
	if s.Port == 0 {
		return &ValidationError{Field: prefix + ".port", Reason: ReasonMissing}
	}
	if s.Port < 1 || s.Port > 65535 {
		return &ValidationError{Field: prefix + ".port", Reason: ReasonBadPort}
	}
	switch s.Security {
	case "":
		return &ValidationError{Field: prefix + ".security", Reason: ReasonMissing}
	case Implicit, StartTLS:
	default:
		return &ValidationError{Field: prefix + ".security", Reason: ReasonBadSecurity}
	}
	return nil
}

// absPath reports whether f is absolute on this system or, so that a profile written on one OS validates on
// another, a Windows drive path ("C:\...") or a UNC path ("\\server\share\...").
func absPath(f string) bool {
	if f == "" || strings.ContainsRune(f, 0) {
		return false
	}
	if filepath.IsAbs(f) || strings.HasPrefix(f, "/") || strings.HasPrefix(f, `\\`) {
		return true
	}
	return len(f) >= 3 && isASCIILetter(f[0]) && f[1] == ':' && (f[2] == '\\' || f[2] == '/')
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// ValidName reports whether name is usable as a profile name, which is also its file name on every supported
// system: 1 to 64 ASCII characters among letters, digits, space, '.', '_', '-', '@' and '+', starting with a letter
// or a digit, not ending with a space or a dot, and not a reserved Windows device name (CON, NUL, COM1…).
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == ' ' || c == '.' || c == '_' || c == '-' || c == '@' || c == '+'):
		default:
			return false
		}
	}
	if last := name[len(name)-1]; last == ' ' || last == '.' {
		return false
	}
	base := strings.ToUpper(name)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	base = strings.TrimRight(base, " ")
	switch base {
	case "CON", "PRN", "AUX", "NUL":
		return false
	}
	if len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) && base[3] >= '0' && base[3] <= '9' {
		return false
	}
	return true
}

// SuggestName turns s (typically an e-mail address) into a valid profile name by replacing every character
// ValidName refuses with '-' and trimming; it returns "" when nothing usable is left.
func SuggestName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == ' ' || c == '.' || c == '_' || c == '-' || c == '@' || c == '+'
		if !ok {
			b[i] = '-'
		}
	}
	name := strings.TrimLeft(string(b), " ._-@+")
	if len(name) > 64 {
		name = name[:64]
	}
	name = strings.TrimRight(name, " .")
	if !ValidName(name) {
		return ""
	}
	return name
}

// SplitAddress splits an addr-spec "local@domain" and reports whether it is acceptable: a non-empty local part of
// printable ASCII without spaces, '<', '>', '(', ')', ',', ';', ':', '"', '\' or a second '@' (quoted local parts
// are not supported), and a domain that ValidHost accepts and that is not an IP literal.
func SplitAddress(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || len(addr) > 254 {
		return "", "", false
	}
	local, domain = addr[:at], addr[at+1:]
	if len(local) > 64 {
		return "", "", false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>(),;:"\@[]`, c) >= 0 {
			return "", "", false
		}
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", "", false
	}
	if !validDNSName(domain) || !strings.Contains(domain, ".") && !strings.EqualFold(domain, "localhost") {
		return "", "", false
	}
	return local, domain, true
}

// ValidHost reports whether h is a DNS host name (ASCII letters, digits, '-' and '.', labels of 1 to 63
// characters, at most 253 in all; one trailing dot allowed) or an IPv4 / bracket-less IPv6 literal.
func ValidHost(h string) bool {
	if isIP(h) {
		return true
	}
	return validDNSName(h)
}

func validDNSName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	allDigits := true
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
				allDigits = false
			default:
				return false
			}
		}
	}
	return !allDigits // "1.2.3" is neither a name nor an address
}

func isIP(h string) bool {
	a, err := netip.ParseAddr(h)
	// A zone ("fe80::1%eth0") makes no sense in a profile.
	return err == nil && a.Zone() == ""
}

// Marshal returns p as indented JSON with "version" set to Version, after Validate.
func Marshal(p *Profile) ([]byte, error) {
	c := p.Clone()
	c.Version = Version
	if err := c.Validate(); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("profile: encode: %w", err)
	}
	return append(data, '\n'), nil
}

// topLevel and serverKeys are the members a version 1 file may contain. Anything else is refused: an unknown
// member is most likely a typo that would silently be ignored otherwise.
var (
	topLevel   = []string{"version", "name", "address", "imap", "smtp", "login", "tls_policy", "ca_files", "cert_sha256", "pkcs11_module"}
	serverKeys = []string{"host", "port", "security"}
	// secretKeys are refused with ReasonSecretNotAllowed rather than ReasonUnknownField.
	secretKeys = []string{"password", "pin", "passwd", "secret", "pass", "operator_password"}
)

// Parse decodes and validates one profile file. Errors: ErrTooLarge (wrapped), *SyntaxError for anything that is not
// one JSON object, *VersionError when "version" is missing or not Version, *ValidationError for a bad, missing,
// unknown or secret member. It never panics, whatever data holds.
func Parse(data []byte) (*Profile, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("profile: %d bytes: %w", len(data), ErrTooLarge)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return nil, syntaxError(err)
	}
	if members == nil { // "null"
		return nil, &SyntaxError{Err: errNotObject}
	}
	rawVersion, ok := members["version"]
	if !ok {
		return nil, &VersionError{Missing: true}
	}
	var n int
	if err := json.Unmarshal(rawVersion, &n); err != nil { // a string, a fraction, 1.0 or 1e0 are refused
		return nil, &VersionError{Missing: true}
	}
	if n != Version {
		return nil, &VersionError{Version: n}
	}
	if err := checkKeys(members, topLevel, ""); err != nil {
		return nil, err
	}
	for _, k := range []string{"imap", "smtp"} {
		raw, ok := members[k]
		if !ok {
			continue
		}
		var sm map[string]json.RawMessage
		if err := json.Unmarshal(raw, &sm); err != nil {
			return nil, &ValidationError{Field: k, Reason: ReasonBadType}
		}
		if err := checkKeys(sm, serverKeys, k+"."); err != nil {
			return nil, err
		}
	}
	var p Profile
	for k, raw := range members {
		var target any
		switch k {
		case "version":
			continue
		case "name":
			target = &p.Name
		case "address":
			target = &p.Address
		case "imap":
			target = &p.IMAP
		case "smtp":
			target = &p.SMTP
		case "login":
			target = &p.Login
		case "tls_policy":
			target = &p.TLSPolicy
		case "ca_files":
			target = &p.CAFiles
		case "cert_sha256":
			target = &p.CertSHA256
		case "pkcs11_module":
			target = &p.PKCS11Module
		}
		if err := json.Unmarshal(raw, target); err != nil {
			field := k
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				field = k + "." + te.Field
			}
			return nil, &ValidationError{Field: field, Reason: ReasonBadType}
		}
	}
	p.Version = n
	if len(p.CAFiles) == 0 {
		p.CAFiles = nil // "ca_files": [] and no member are the same profile
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func checkKeys(m map[string]json.RawMessage, allowed []string, prefix string) error {
	// Sorted iteration gives the same error for the same file every time.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if contains(secretKeys, strings.ToLower(k)) {
			return &ValidationError{Field: prefix + k, Reason: ReasonSecretNotAllowed}
		}
		if !contains(allowed, k) {
			return &ValidationError{Field: prefix + k, Reason: ReasonUnknownField}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Protocols of a profile's two servers, as StandardPort and GuessHost name them.
const (
	ProtocolIMAP = "imap"
	ProtocolSMTP = "smtp"
)

// StandardPort is the registered port of protocol (ProtocolIMAP or ProtocolSMTP) in security mode s: IMAP 993
// implicit TLS or 143 STARTTLS (RFC 8314, RFC 9051), mail submission 465 implicit TLS or 587 STARTTLS (RFC 8314,
// RFC 6409). Anything else than ProtocolIMAP counts as submission.
func StandardPort(protocol string, s Security) int {
	switch {
	case protocol == ProtocolIMAP && s == StartTLS:
		return 143
	case protocol == ProtocolIMAP:
		return 993
	case s == StartTLS:
		return 587
	}
	return 465
}

// SameConnection reports whether p and q reach the mailbox the same way: every setting but the name, so that a
// connection test of one holds for the other. Fingerprints compare without regard to case; a nil and an empty CA
// file list are the same.
func (p *Profile) SameConnection(q *Profile) bool {
	return p.Version == q.Version && p.Address == q.Address && p.IMAP == q.IMAP && p.SMTP == q.SMTP &&
		p.Login == q.Login && p.TLSPolicy == q.TLSPolicy && slices.Equal(p.CAFiles, q.CAFiles) &&
		strings.EqualFold(p.CertSHA256, q.CertSHA256) && p.PKCS11Module == q.PKCS11Module
}
