package autoconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cardmail/cardmail/profile"
)

const goodXML = `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="clinic.test">
    <domain>clinic.test</domain>
    <displayName>Messagerie %EMAILDOMAIN%</displayName>
    <displayShortName>Clinic</displayShortName>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>TLS-client-cert</authentication>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>IMAP.Clinic.Test.</hostname>
      <port>143</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.clinic.test</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.clinic.test</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.clinic.test</hostname>
      <port>25</port>
      <socketType>plain</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>`

const addr = "dr.martin@clinic.test"

func TestParseConfig(t *testing.T) {
	wantGood := &Config{
		DisplayName: "Messagerie clinic.test",
		IMAP: []Server{
			{Server: profile.Server{Host: "imap.clinic.test", Port: 993, Security: profile.Implicit}, Username: addr, Auth: []string{"TLS-client-cert", "password-cleartext"}},
			{Server: profile.Server{Host: "imap.clinic.test", Port: 143, Security: profile.StartTLS}, Username: "dr.martin"},
		},
		SMTP: []Server{{Server: profile.Server{Host: "smtp.clinic.test", Port: 465, Security: profile.Implicit}, Username: addr}},
		Rejected: []Rejected{
			{Protocol: "pop3", Host: "pop.clinic.test", Port: "995", Reason: RejectOtherProtocol},
			{Protocol: "smtp", Host: "smtp.clinic.test", Port: "25", Reason: RejectPlain},
		},
	}
	server := func(typ, host, port, socket string) string {
		return `<incomingServer type="` + typ + `"><hostname>` + host + `</hostname><port>` + port +
			`</port><socketType>` + socket + `</socketType></incomingServer>`
	}
	doc := func(inner string) string {
		return `<clientConfig version="1.1"><emailProvider id="x">` + inner + `</emailProvider></clientConfig>`
	}
	cases := []struct {
		name     string
		data     string
		want     *Config
		rejected []string // reasons, when want is nil and no error is expected
		err      func(error) bool
	}{
		{name: "good", data: goodXML, want: wantGood},
		{name: "no servers", data: doc(`<displayShortName>X</displayShortName>`), want: &Config{DisplayName: "X"}},
		{name: "duplicate", data: doc(server("imap", "a.test", "993", "SSL") + server("IMAP", "A.test", "993", "ssl")),
			want: &Config{IMAP: []Server{{Server: profile.Server{Host: "a.test", Port: 993, Security: profile.Implicit}}}}},
		{name: "plain", data: doc(server("imap", "a.test", "143", "plain")), rejected: []string{RejectPlain}},
		{name: "unknown socket", data: doc(server("imap", "a.test", "993", "TLS")), rejected: []string{RejectSocketType}},
		{name: "bad port", data: doc(server("imap", "a.test", "99999", "SSL") + server("imap", "a.test", "x", "SSL") + server("imap", "a.test", "", "SSL")),
			rejected: []string{RejectPort, RejectPort, RejectPort}},
		{name: "bad host", data: doc(server("imap", "%UNKNOWN%.test", "993", "SSL") + server("imap", "", "993", "SSL") + server("imap", "a b", "993", "SSL")),
			rejected: []string{RejectHost, RejectHost, RejectHost}},
		{name: "ip host", data: doc(server("imap", "192.0.2.1", "993", "SSL")),
			want: &Config{IMAP: []Server{{Server: profile.Server{Host: "192.0.2.1", Port: 993, Security: profile.Implicit}}}}},
		{name: "latin1", data: `<?xml version="1.0" encoding="ISO-8859-1"?>` + doc("<displayName>Sant\xe9</displayName>"),
			want: &Config{DisplayName: "Santé"}},
		{name: "unsupported charset", data: `<?xml version="1.0" encoding="EBCDIC"?>` + doc(""), err: isXMLError},
		{name: "malformed", data: `<clientConfig><emailProvider>`, err: isXMLError},
		{name: "not xml", data: `{"imap": "x"}`, err: isXMLError},
		{name: "empty", data: ``, err: isXMLError},
		{name: "wrong root", data: `<html><body>404</body></html>`, err: isXMLError},
		{name: "mismatched tags", data: `<clientConfig></emailProvider>`, err: isXMLError},
		{name: "external entity ignored", data: `<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>` + doc("<displayName>&e;</displayName>"), err: isXMLError},
		{name: "too large", data: goodXML + strings.Repeat(" ", MaxBodySize), err: func(err error) bool { return errors.Is(err, ErrTooLarge) }},
		// Cases found by fuzzing:
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.data), addr)
			if tc.err != nil {
				if err == nil || !tc.err(err) || cfg != nil {
					t.Fatalf("ParseConfig = %+v, %T %v", cfg, err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if tc.want != nil {
				if !reflect.DeepEqual(cfg, tc.want) {
					t.Fatalf("ParseConfig:\n got %+v\nwant %+v", cfg, tc.want)
				}
				return
			}
			var reasons []string
			for _, r := range cfg.Rejected {
				reasons = append(reasons, r.Reason)
			}
			if len(cfg.IMAP)+len(cfg.SMTP) != 0 || !reflect.DeepEqual(reasons, tc.rejected) {
				t.Fatalf("ParseConfig = %+v, want only rejections %v", cfg, tc.rejected)
			}
		})
	}
}

func isXMLError(err error) bool { var e *XMLError; return errors.As(err, &e) }

func TestSplitAddress(t *testing.T) {
	good := map[string][2]string{
		"a@b.test":           {"a", "b.test"},
		"A.B+c@Clinic.Test.": {"A.B+c", "clinic.test"},
	}
	for in, want := range good {
		l, d, err := splitAddress(in)
		if err != nil || l != want[0] || d != want[1] {
			t.Errorf("splitAddress(%q) = %q %q %v", in, l, d, err)
		}
	}
	for _, in := range []string{"", "a", "@b.test", "a@", "a@b", "a@evil.test/x?y", "a@evil.test:80", "a b@c.test",
		"a@[127.0.0.1]", "a@127.0.0.1", "a@héloïse.test", "<a@b.test>"} {
		var ae *AddressError
		if _, _, err := splitAddress(in); !errors.As(err, &ae) {
			t.Errorf("splitAddress(%q) err %v, want *AddressError", in, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodXML), addr)
	f.Add([]byte(`<clientConfig><emailProvider><incomingServer type="imap"><hostname>%EMAILLOCALPART%.x</hostname><port>1</port><socketType>STARTTLS</socketType></incomingServer></emailProvider></clientConfig>`), "a-b@c.test")
	f.Add([]byte(`<?xml version="1.0" encoding="latin1"?><clientConfig/>`), addr)
	f.Add([]byte(`<clientConfig><emailProvider><outgoingServer type="smtp"><port>0x1</port></outgoingServer>`), addr)
	f.Fuzz(func(t *testing.T, data []byte, address string) {
		cfg, err := ParseConfig(data, address)
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error")
			}
			return
		}
		for _, list := range [][]Server{cfg.IMAP, cfg.SMTP} {
			for _, s := range list {
				if !validHost(s.Host) || s.Port < 1 || s.Port > 65535 || (s.Security != profile.Implicit && s.Security != profile.StartTLS) {
					t.Fatalf("bad candidate %+v", s)
				}
			}
		}
	})
}
