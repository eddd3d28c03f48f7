package diagnosis

import (
	"errors"
	"strconv"
	"strings"
)

// ErrParse: an IMAP response line the ladder could not parse.
var ErrParse = errors.New("unparsable IMAP response")

// imapList is a parenthesized list of an IMAP response; its elements are string (atom or string, NIL as "")
// or imapList.
type imapList []any

// parseIMAP splits one logical IMAP response line (literals already inlined as quoted strings) into atoms, quoted
// strings and parenthesized lists (RFC 9051 section 4). Bracketed response codes ("[CAPABILITY ...]") stay inside
// atoms as written. It never panics; a malformed line gives ErrParse.
func parseIMAP(line string) (imapList, error) {
	p := imapParser{s: line}
	out, err := p.list(0)
	if err != nil {
		return nil, err
	}
	return out, nil
}

type imapParser struct {
	s string
	i int
}

const maxDepth = 32

func (p *imapParser) list(depth int) (imapList, error) {
	if depth > maxDepth {
		return nil, ErrParse
	}
	out := imapList{}
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == ' ':
			p.i++
		case c == '(':
			p.i++
			sub, err := p.list(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub)
		case c == ')':
			if depth == 0 {
				return nil, ErrParse
			}
			p.i++
			return out, nil
		case c == '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		default:
			start := p.i
			brackets := 0
			for p.i < len(p.s) {
				c := p.s[p.i]
				if c == '[' {
					brackets++
				} else if c == ']' && brackets > 0 {
					brackets--
				} else if brackets == 0 && (c == ' ' || c == '(' || c == ')') {
					break
				}
				p.i++
			}
			atom := p.s[start:p.i]
			if strings.EqualFold(atom, "NIL") {
				atom = ""
			}
			out = append(out, atom)
		}
	}
	if depth > 0 {
		return nil, ErrParse
	}
	return out, nil
}

// quoted reads a quoted string with \" and \\ escapes; it also accepts strconv.Quote's output for inlined literals.
func (p *imapParser) quoted() (string, error) {
	start := p.i
	p.i++
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '\\':
			p.i += 2
		case '"':
			p.i++
			raw := p.s[start:p.i]
			if s, err := strconv.Unquote(raw); err == nil {
				return s, nil
			}
			// IMAP quoting only knows \\ and \".
			inner := raw[1 : len(raw)-1]
			return strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(inner), nil
		default:
			p.i++
		}
	}
	return "", ErrParse
}

// folder is one mailbox seen by the list step.
type folder struct {
	Name             string
	Attrs            []string
	NoSelect         bool
	Messages, Unseen int64 // -1 when unknown
}

// parseListLine parses "* LIST (attrs) delim name" (without the "* ").
func parseListLine(tokens imapList) (folder, bool) {
	if len(tokens) < 5 || !strings.EqualFold(str(tokens[1]), "LIST") {
		return folder{}, false
	}
	attrs, ok := tokens[2].(imapList)
	if !ok {
		return folder{}, false
	}
	f := folder{Name: str(tokens[4]), Messages: -1, Unseen: -1}
	for _, a := range attrs {
		s := str(a)
		f.Attrs = append(f.Attrs, s)
		if strings.EqualFold(s, `\Noselect`) || strings.EqualFold(s, `\NonExistent`) {
			f.NoSelect = true
		}
	}
	return f, f.Name != "" || len(tokens) == 5
}

// parseStatusLine parses "* STATUS name (MESSAGES n UNSEEN m)" (tokens include the "*").
func parseStatusLine(tokens imapList) (name string, messages, unseen int64, ok bool) {
	if len(tokens) < 4 || !strings.EqualFold(str(tokens[1]), "STATUS") {
		return "", 0, 0, false
	}
	items, isList := tokens[3].(imapList)
	if !isList {
		return "", 0, 0, false
	}
	messages, unseen = -1, -1
	for i := 0; i+1 < len(items); i += 2 {
		v, err := strconv.ParseInt(str(items[i+1]), 10, 64)
		if err != nil {
			continue
		}
		switch strings.ToUpper(str(items[i])) {
		case "MESSAGES":
			messages = v
		case "UNSEEN":
			unseen = v
		}
	}
	return str(tokens[2]), messages, unseen, true
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// capabilitiesFrom extracts the capabilities of a "* CAPABILITY ..." line or of a "[CAPABILITY ...]" response code
// in a greeting or tagged OK; ok is false when the line has neither.
func capabilitiesFrom(line string) (caps []string, ok bool) {
	up := upperASCII(line) // byte offsets in up must be offsets in line
	var rest string
	switch {
	case strings.HasPrefix(up, "* CAPABILITY "):
		rest = line[len("* CAPABILITY "):]
	case strings.Contains(up, "[CAPABILITY "):
		i := strings.Index(up, "[CAPABILITY ")
		rest = line[i+len("[CAPABILITY "):]
		if j := strings.IndexByte(rest, ']'); j >= 0 {
			rest = rest[:j]
		}
	default:
		return nil, false
	}
	return strings.Fields(rest), true
}

// upperASCII upper-cases the ASCII letters of s and leaves every other byte alone, so that the result has the same
// length and byte offsets as s (strings.ToUpper turns each invalid UTF-8 byte into a 3-byte U+FFFD, and some
// non-ASCII letters change length).
func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}
