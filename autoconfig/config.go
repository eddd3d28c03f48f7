// Package autoconfig finds the IMAP and SMTP servers of a mail address, the way mail clients do: the Thunderbird
// autoconfig XML published by the provider (https://autoconfig.<domain>/mail/config-v1.1.xml and
// https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml), then DNS SRV records (RFC 6186, RFC 8314).
//
// Results are candidates only: nothing here connects to a mail server or proves it works. Plaintext servers are
// never offered as candidates (they are listed in Result.Rejected so a diagnosis can say why).
//
// The types are plain strings and ints; the caller converts them to its own profile and mail types.
package autoconfig

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cardmail/cardmail/profile"
)

// Server is one candidate endpoint: the profile's server model (socketType SSL or _imaps / _submissions is
// profile.Implicit, STARTTLS or _imap / _submission is profile.StartTLS) with what discovery learnt about it.
type Server struct {
	profile.Server
	// Username is the XML's <username> with placeholders replaced (usually the address); "" from SRV.
	Username string
	// Auth lists the XML's <authentication> values as written, in order ("password-cleartext",
	// "TLS-client-cert", …); nil from SRV.
	Auth []string
	// OutsideDomain (SRV only): the target host is neither the mail domain nor under it. DNS answers are not
	// authenticated, so such a target may have been put there by someone else than the domain's owner: a client
	// must show the person both names and have them confirm before using it (RFC 6186 §6).
	OutsideDomain bool
}

// InDomain reports whether host is domain or one of its subdomains (names compared without regard to case or a
// trailing dot).
func InDomain(host, domain string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	return domain != "" && (host == domain || strings.HasSuffix(host, "."+domain))
}

// Rejection reasons (Rejected.Reason): stable identifiers, never sentences.
const (
	RejectPlain         = "plain"           // socketType plain: no TLS
	RejectSocketType    = "bad_socket_type" // a socketType other than SSL, STARTTLS, plain
	RejectHost          = "bad_host"        // empty or not a host name after placeholders
	RejectPort          = "bad_port"        // not an integer in 1..65535
	RejectOtherProtocol = "other_protocol"  // incomingServer that is not IMAP (pop3, exchange…), outgoing not smtp
)

// Rejected is a server a source described but that is not offered as a candidate.
type Rejected struct {
	Protocol string // "imap", "smtp", or the XML's type attribute for RejectOtherProtocol
	Host     string
	Port     string
	Reason   string
}

// Config is what one autoconfig XML document offers, placeholders replaced, usable candidates in document order
// without duplicates.
type Config struct {
	DisplayName string
	IMAP, SMTP  []Server
	Rejected    []Rejected
}

// MaxBodySize caps an autoconfig document (1 MB). ParseConfig refuses larger input with ErrTooLarge, and Discover
// stops reading a body after this many bytes.
const MaxBodySize = 1 << 20

type xmlClientConfig struct {
	XMLName   xml.Name      `xml:"clientConfig"`
	Providers []xmlProvider `xml:"emailProvider"`
}

type xmlProvider struct {
	DisplayName string      `xml:"displayName"`
	ShortName   string      `xml:"displayShortName"`
	Incoming    []xmlServer `xml:"incomingServer"`
	Outgoing    []xmlServer `xml:"outgoingServer"`
}

type xmlServer struct {
	Type       string   `xml:"type,attr"`
	Hostname   string   `xml:"hostname"`
	Port       string   `xml:"port"`
	SocketType string   `xml:"socketType"`
	Username   string   `xml:"username"`
	Auth       []string `xml:"authentication"`
}

// ParseConfig parses a Thunderbird autoconfig document (clientConfig version 1.1) for address: incomingServer
// type="imap" and outgoingServer type="smtp" become candidates, socketType SSL → profile.Implicit, STARTTLS → profile.StartTLS;
// plain and unknown socket types, other protocols, bad hosts and ports go to Rejected. The placeholders
// %EMAILADDRESS%, %EMAILLOCALPART% and %EMAILDOMAIN% are replaced in host names, user names and the display name.
// The document may be UTF-8, US-ASCII or ISO-8859-1.
//
// Errors: ErrTooLarge (wrapped) over MaxBodySize, *XMLError when data is not well-formed XML or its root is not
// clientConfig, *AddressError when address is not local@domain. A well-formed document without any usable server
// is not an error here (Config lists are empty). It never panics.
func ParseConfig(data []byte, address string) (*Config, error) {
	if len(data) > MaxBodySize {
		return nil, fmt.Errorf("autoconfig: %d bytes: %w", len(data), ErrTooLarge)
	}
	local, domain, err := splitAddress(address)
	if err != nil {
		return nil, err
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	var doc xmlClientConfig
	if err := dec.Decode(&doc); err != nil {
		return nil, &XMLError{Offset: dec.InputOffset(), Err: err}
	}
	subst := strings.NewReplacer("%EMAILADDRESS%", address, "%EMAILLOCALPART%", local, "%EMAILDOMAIN%", domain)
	cfg := &Config{}
	for _, p := range doc.Providers {
		if cfg.DisplayName == "" {
			cfg.DisplayName = strings.TrimSpace(subst.Replace(p.DisplayName))
			if cfg.DisplayName == "" {
				cfg.DisplayName = strings.TrimSpace(subst.Replace(p.ShortName))
			}
		}
		for _, s := range p.Incoming {
			cfg.add(s, "imap", &cfg.IMAP, subst)
		}
		for _, s := range p.Outgoing {
			cfg.add(s, "smtp", &cfg.SMTP, subst)
		}
	}
	return cfg, nil
}

func (c *Config) add(s xmlServer, protocol string, list *[]Server, subst *strings.Replacer) {
	host := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(subst.Replace(s.Hostname))), ".")
	port := strings.TrimSpace(s.Port)
	reject := func(proto, reason string) {
		c.Rejected = append(c.Rejected, Rejected{Protocol: proto, Host: host, Port: port, Reason: reason})
	}
	if !strings.EqualFold(strings.TrimSpace(s.Type), protocol) {
		reject(strings.TrimSpace(s.Type), RejectOtherProtocol)
		return
	}
	var sec profile.Security
	switch strings.ToUpper(strings.TrimSpace(s.SocketType)) {
	case "SSL":
		sec = profile.Implicit
	case "STARTTLS":
		sec = profile.StartTLS
	case "PLAIN":
		reject(protocol, RejectPlain)
		return
	default:
		reject(protocol, RejectSocketType)
		return
	}
	if !validHost(host) {
		reject(protocol, RejectHost)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		reject(protocol, RejectPort)
		return
	}
	srv := Server{Server: profile.Server{Host: host, Port: n, Security: sec}, Username: strings.TrimSpace(subst.Replace(s.Username))}
	for _, a := range s.Auth {
		if a = strings.TrimSpace(a); a != "" {
			srv.Auth = append(srv.Auth, a)
		}
	}
	for _, have := range *list {
		if have.Host == srv.Host && have.Port == srv.Port && have.Security == srv.Security {
			return
		}
	}
	*list = append(*list, srv)
}

// charsetReader accepts the encodings autoconfig files are found in: UTF-8 and US-ASCII (as is) and ISO-8859-1
// (converted). encoding/xml calls it only for a non-UTF-8 declaration.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1":
		data, err := io.ReadAll(io.LimitReader(input, MaxBodySize+1))
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		b.Grow(len(data) * 2)
		for _, c := range data {
			b.WriteRune(rune(c))
		}
		return strings.NewReader(b.String()), nil
	}
	return nil, fmt.Errorf("%w %q", errCharset, charset)
}

var errCharset = errors.New("unsupported charset")

// splitAddress splits local@domain; the domain must be an ASCII DNS name (it goes into URLs and DNS queries).
func splitAddress(address string) (local, domain string, err error) {
	local, domain, ok := profile.SplitAddress(address)
	if !ok || !strings.Contains(domain, ".") {
		return "", "", &AddressError{Address: address}
	}
	return local, strings.ToLower(strings.TrimSuffix(domain, ".")), nil
}

// validHost: an ASCII DNS name or an IP address without zone (the same rule as a saved profile's).
func validHost(h string) bool { return profile.ValidHost(h) }
