package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of the pre-authentication dialogue with a local client.
const (
	maxCommandLine = 8 << 10 // one line of a command
	maxLiteral     = 8 << 10 // one literal (a LOGIN argument)
	maxBadCommands = 5       // BAD replies before the bridge hangs up
)

// command is one client command of the pre-authentication state (RFC 3501 §6.1-6.2).
type command struct {
	tag  string
	name string   // upper-case
	args []string // atoms, quoted strings (unescaped) and literals, in order
}

// syntaxError is a command the bridge cannot parse; tag is "*" when even the tag is missing.
type syntaxError struct {
	tag, msg string
}

func (e *syntaxError) Error() string { return e.msg }

// errLiteralTooLarge: a literal over maxLiteral; its bytes may already be on the way (LITERAL+), so the connection
// ends.
var errLiteralTooLarge = errors.New("literal too large")

// readCommand reads one command, with its literals ({n} synchronizing: cont is called first, which sends the
// continuation request; {n+} LITERAL+). Errors: *syntaxError (the connection can go on), errLineTooLong,
// errLiteralTooLarge and read errors (it cannot).
func readCommand(r *bufio.Reader, cont func() error) (*command, error) {
	line, err := readLimited(r, maxCommandLine)
	if err != nil {
		return nil, err
	}
	var toks []string
	for {
		n, sync, rest, isLit := splitLiteral(line)
		ts, err := tokenize(rest)
		if err != nil {
			return nil, &syntaxError{tag: tagOf(toks, ts), msg: err.Error()}
		}
		toks = append(toks, ts...)
		if !isLit {
			break
		}
		if n > maxLiteral {
			if sync {
				return nil, &syntaxError{tag: tagOf(toks, nil), msg: "literal too large"}
			}
			return nil, errLiteralTooLarge
		}
		if sync {
			if err := cont(); err != nil {
				return nil, err
			}
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		toks = append(toks, string(lit))
		if line, err = readLimited(r, maxCommandLine); err != nil {
			return nil, err
		}
		if line != "" && line[0] != ' ' {
			return nil, &syntaxError{tag: tagOf(toks, nil), msg: "missing space after literal"}
		}
	}
	switch {
	case len(toks) == 0:
		return nil, &syntaxError{tag: "*", msg: "empty command"}
	case !validTag(toks[0]):
		return nil, &syntaxError{tag: "*", msg: "invalid tag"}
	case len(toks) == 1 || !validTag(toks[1]):
		return nil, &syntaxError{tag: toks[0], msg: "missing or invalid command name"}
	}
	return &command{tag: toks[0], name: strings.ToUpper(toks[1]), args: toks[2:]}, nil
}

// tagOf returns the command's tag when one was read and is a valid tag, else "*".
func tagOf(done, more []string) string {
	switch {
	case len(done) > 0 && validTag(done[0]):
		return done[0]
	case len(done) == 0 && len(more) > 0 && validTag(more[0]):
		return more[0]
	}
	return "*"
}

// validTag reports a tag of RFC 3501 §9: ASTRING-CHARs except "+" (no controls, spaces, quotes or list chars).
func validTag(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\+`, c) >= 0 {
			return false
		}
	}
	return true
}

// splitLiteral splits a line ending with a literal announcement ({n} or {n+}) into the size, whether it is
// synchronizing, and the text before it.
func splitLiteral(line string) (n int, sync bool, rest string, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, line, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, line, false
	}
	spec := line[i+1 : len(line)-1]
	sync = !strings.HasSuffix(spec, "+")
	v, err := strconv.Atoi(strings.TrimSuffix(spec, "+"))
	if err != nil || v < 0 || (i > 0 && line[i-1] != ' ') {
		return 0, false, line, false
	}
	return v, sync, line[:i], true
}

// tokenize splits text into atoms and quoted strings separated by spaces. Quoted strings are unescaped (\\ and
// \"); anything else is kept as it is (parenthesised lists come out as plain tokens; no pre-login command here
// needs them).
func tokenize(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ':
			i++
		case s[i] == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
					if j == len(s) || (s[j] != '\\' && s[j] != '"') {
						return out, fmt.Errorf("bad escape in quoted string")
					}
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return out, fmt.Errorf("unterminated quoted string")
			}
			out = append(out, b.String())
			i = j + 1
		default:
			j := i
			for j < len(s) && s[j] != ' ' {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out, nil
}

// Capabilities the local side never advertises after the login: TLS and login are the bridge's business towards
// the server, and compression would hide the response boundaries the bridge needs (capability rewriting, BYE on
// card removal); a loopback hop gains nothing from it.
func dropCap(c string) bool {
	u := strings.ToUpper(c)
	return u == "STARTTLS" || u == "LOGINDISABLED" || strings.HasPrefix(u, "AUTH=") || strings.HasPrefix(u, "COMPRESS=")
}

func filterCaps(caps []string) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if !dropCap(c) {
			out = append(out, c)
		}
	}
	return out
}

// rewriteCapLine returns line (a whole server response line, CRLF included, at a response start) with the
// capability list of "* CAPABILITY ..." or of a "[CAPABILITY ...]" response code filtered; other lines unchanged.
func rewriteCapLine(line []byte) []byte {
	body := bytes.TrimRight(line, "\r\n")
	sp := bytes.IndexByte(body, ' ')
	if sp <= 0 {
		return line
	}
	rest := body[sp+1:]
	if hasPrefixFold(rest, "CAPABILITY ") {
		caps := strings.Fields(string(rest[len("CAPABILITY "):]))
		kept := filterCaps(caps)
		if len(kept) == len(caps) {
			return line
		}
		return []byte(string(body[:sp+1]) + "CAPABILITY " + strings.Join(kept, " ") + "\r\n")
	}
	// "* OK [CAPABILITY ...] text", "tag OK [CAPABILITY ...] text" (also PREAUTH, NO, BAD, BYE)
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return line
	}
	code := rest[sp2+1:]
	if !hasPrefixFold(code, "[CAPABILITY ") {
		return line
	}
	end := bytes.IndexByte(code, ']')
	if end < 0 {
		return line
	}
	caps := strings.Fields(string(code[len("[CAPABILITY "):end]))
	kept := filterCaps(caps)
	if len(kept) == len(caps) {
		return line
	}
	head := string(body[:sp+1+sp2+1])
	return []byte(head + "[CAPABILITY " + strings.Join(kept, " ") + "]" + string(code[end+1:]) + "\r\n")
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// isBye reports an untagged BYE line.
func isBye(line []byte) bool { return hasPrefixFold(line, "* BYE") }

// responseCopier relays server responses to the local client, response by response: it rewrites capability lists
// at response starts and copies literals through without looking at them, so it always knows whether it stands
// between two responses (where the bridge may say BYE itself).
type responseCopier struct {
	dst     *bufio.Writer
	src     *bufio.Reader
	atStart bool   // the next byte from src starts a new response
	carry   []byte // the end of a line split by the buffer, to find a literal announcement across the split
	sawBye  bool   // the server said BYE
}

// maxHold bounds a response start held back until its line ends (a capability list split by the read buffer);
// longer lines pass through as they come.
const maxHold = 16 << 10

// run copies until src fails. It returns src's error (io.EOF when the server closed) or dst's.
func (rc *responseCopier) run() error {
	rc.atStart = true
	var pend []byte // the start of a response line, held until its end arrives
	for {
		if rc.src.Buffered() == 0 {
			if err := rc.dst.Flush(); err != nil {
				return err
			}
		}
		line, err := rc.src.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if rc.atStart && len(pend)+len(line) <= maxHold {
				pend = append(pend, line...)
				continue
			}
			if _, werr := rc.dst.Write(pend); werr != nil {
				return werr
			}
			if _, werr := rc.dst.Write(line); werr != nil {
				return werr
			}
			rc.keepTail(pend)
			rc.keepTail(line)
			pend = pend[:0]
			rc.atStart = false
			continue
		}
		if len(pend) > 0 {
			line = append(pend, line...)
			pend = pend[:0]
		}
		if err != nil {
			if len(line) > 0 {
				rc.atStart = false
				if _, werr := rc.dst.Write(line); werr != nil {
					return werr
				}
			}
			_ = rc.dst.Flush()
			return err
		}
		if rc.atStart {
			if isBye(line) {
				rc.sawBye = true
			}
			line = rewriteCapLine(line)
		}
		if _, err := rc.dst.Write(line); err != nil {
			return err
		}
		whole := line
		if len(rc.carry) > 0 {
			whole = append(rc.carry, line...)
			rc.carry = rc.carry[:0]
		}
		n, isLit := literalSize(whole)
		if !isLit {
			rc.atStart = true
			continue
		}
		rc.atStart = false
		if _, err := io.CopyN(rc.dst, rc.src, n); err != nil {
			_ = rc.dst.Flush()
			return err
		}
	}
}

// keepTail remembers the last bytes of a split line (a literal announcement is at most 22 bytes: "~{" + 19 digits
// + "+}").
func (rc *responseCopier) keepTail(b []byte) {
	rc.carry = append(rc.carry, b...)
	if len(rc.carry) > 24 {
		rc.carry = append(rc.carry[:0], rc.carry[len(rc.carry)-24:]...)
	}
}

// literalSize parses a literal announcement ({n}, {n+}, ~{n}) at the end of a CRLF line.
func literalSize(line []byte) (int64, bool) {
	b := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(b) < 3 || b[len(b)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(b, '{')
	if i < 0 {
		return 0, false
	}
	spec := bytes.TrimSuffix(b[i+1:len(b)-1], []byte("+"))
	if len(spec) == 0 || len(spec) > 19 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(spec), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
