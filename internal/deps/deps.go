// Package deps keeps modules in go.mod that are about to be used by packages under construction (OCSP for
// tlspolicy, no-echo terminal input for the CLI's PIN prompt). Delete it once they are imported for real.
package deps

import (
	_ "golang.org/x/crypto/ocsp"
	_ "golang.org/x/term"
)

import (
	_ "github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/emersion/go-imap/v2/imapserver"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
)

// DNS messages for the RFC 6186 SRV discovery tests' local DNS responder.
import _ "golang.org/x/net/dns/dnsmessage"
