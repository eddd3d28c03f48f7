package token

import (
	"crypto/x509"
	"encoding/hex"
	"strings"
)

// Description is the displayable data of a certificate: names in human form and usages as stable identifiers.
// It carries no translated words; the GUI and the CLI add those.
type Description struct {
	Subject, Issuer     string // common name when there is one, else the full distinguished name
	SubjectDN, IssuerDN string // RFC 2253-like distinguished names
	Email               string // first e-mail address (SAN or subject), "" if none
	Serial              string // hex
	NotBefore, NotAfter string // RFC 3339, UTC
	KeyUsage            []string
	ExtKeyUsage         []string
	SHA256              string // hex, lowercase
	SHA256Colons        string // AA:BB:... as browsers show it
	KeyType             string
	KeyBits             int
	Usable              bool
	Reasons             []Reason
	ParseError          string
}

var keyUsageNames = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "nonRepudiation"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"}, {x509.KeyUsageEncipherOnly, "encipherOnly"},
	{x509.KeyUsageDecipherOnly, "decipherOnly"},
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
}

// Describe returns c's displayable data. It never panics, whatever c holds.
func Describe(c *Certificate) Description {
	d := Description{SHA256: hex.EncodeToString(c.SHA256[:]), KeyType: c.KeyType, KeyBits: c.KeyBits,
		Usable: c.Verdict.Usable, Reasons: c.Verdict.Reasons}
	parts := make([]string, len(c.SHA256))
	for i, b := range c.SHA256 {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{b}))
	}
	d.SHA256Colons = strings.Join(parts, ":")
	if c.ParseErr != nil {
		d.ParseError = c.ParseErr.Error()
	}
	x := c.Cert
	if x == nil {
		return d
	}
	d.SubjectDN, d.IssuerDN = x.Subject.String(), x.Issuer.String()
	d.Subject, d.Issuer = d.SubjectDN, d.IssuerDN
	if x.Subject.CommonName != "" {
		d.Subject = x.Subject.CommonName
	}
	if x.Issuer.CommonName != "" {
		d.Issuer = x.Issuer.CommonName
	}
	if len(x.EmailAddresses) > 0 {
		d.Email = x.EmailAddresses[0]
	}
	if x.SerialNumber != nil {
		d.Serial = strings.ToUpper(x.SerialNumber.Text(16))
	}
	d.NotBefore = x.NotBefore.UTC().Format("2006-01-02T15:04:05Z")
	d.NotAfter = x.NotAfter.UTC().Format("2006-01-02T15:04:05Z")
	for _, k := range keyUsageNames {
		if x.KeyUsage&k.bit != 0 {
			d.KeyUsage = append(d.KeyUsage, k.name)
		}
	}
	for _, e := range x.ExtKeyUsage {
		if n, ok := extKeyUsageNames[e]; ok {
			d.ExtKeyUsage = append(d.ExtKeyUsage, n)
		}
	}
	for _, oid := range x.UnknownExtKeyUsage {
		d.ExtKeyUsage = append(d.ExtKeyUsage, oid.String())
	}
	return d
}
