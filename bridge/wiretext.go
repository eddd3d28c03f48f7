package bridge

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// wireText makes s fit a protocol reply line: IMAP resp-text (RFC 3501 TEXT-CHAR) and SMTP replies (RFC 5321) are
// 7-bit. Accents are dropped (é → e), French typography is mapped to ASCII (’ → ', « » → ", no-break spaces →
// space), line ends become spaces, and anything else outside printable ASCII becomes '?'.
func wireText(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		switch {
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case unicode.Is(unicode.Mn, r):
			// a combining accent: drop it
		case r == '\r' || r == '\n' || r == '\t' || unicode.IsSpace(r):
			b.WriteByte(' ')
		case r == '’' || r == '‘':
			b.WriteByte('\'')
		case r == '«' || r == '»' || r == '“' || r == '”':
			b.WriteByte('"')
		case r == '–' || r == '—':
			b.WriteByte('-')
		case r == '…':
			b.WriteString("...")
		case r == 'œ':
			b.WriteString("oe")
		case r == 'Œ':
			b.WriteString("OE")
		case r == 'æ':
			b.WriteString("ae")
		default:
			b.WriteByte('?')
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
