package mail

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
)

// logWriter turns a protocol dialogue into redacted lines for Trace.Log. go-imap and go-smtp write both directions
// of a connection into one debug writer, so lines carry no direction; the redactor recognises the client's login
// lines by their shape and remembers that a SASL exchange is running, so that the client's continuation lines
// (base64 payloads) are hidden too until the server's final answer.
type logWriter struct {
	r   *redactor
	buf []byte
}

type redactor struct {
	mu     sync.Mutex
	log    func(string)
	inSASL bool
	secret string
}

func newRedactor(log func(string), secret string) *redactor {
	return &redactor{log: log, secret: secret}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > 4096 { // a long literal: never keep it whole
				w.r.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		w.r.emit(line)
	}
}

var (
	// Client lines: IMAP "tag LOGIN user pass", "tag AUTHENTICATE MECH [ir]"; SMTP "AUTH MECH [ir]".
	imapLoginRe = regexp.MustCompile(`(?i)^(\S+ LOGIN)(\s.*)?$`)
	imapAuthRe  = regexp.MustCompile(`(?i)^(\S+ AUTHENTICATE \S+)(\s.*)?$`)
	smtpAuthRe  = regexp.MustCompile(`(?i)^(AUTH \S+)(\s.*)?$`)
	// Server lines during SASL: IMAP continuation "+ ..." or "+", SMTP 334; final answers end the exchange.
	saslContRe = regexp.MustCompile(`^(\+( |$)|334[ -]|334$)`)
	saslEndRe  = regexp.MustCompile(`(?i)^(\S+ (OK|NO|BAD)\b|\* BYE\b|[245]\d\d([ -]|$))`)
)

// emit logs one redacted line; r.mu is held.
func (r *redactor) emit(line string) {
	if r.log != nil {
		r.log(r.redactLine(line))
	}
}

// redactLine returns line with secrets replaced; it is the whole redaction policy (fuzzed).
func (r *redactor) redactLine(line string) string {
	out := line
	switch {
	case r.inSASL && saslEndRe.MatchString(line):
		r.inSASL = false
	case r.inSASL && saslContRe.MatchString(line):
	case r.inSASL:
		out = "***"
	case imapAuthRe.MatchString(line):
		r.inSASL = true
		if m := imapAuthRe.FindStringSubmatch(line); m[2] != "" {
			out = m[1] + " ***"
		}
	case smtpAuthRe.MatchString(line):
		r.inSASL = true
		if m := smtpAuthRe.FindStringSubmatch(line); m[2] != "" {
			out = m[1] + " ***"
		}
	case imapLoginRe.MatchString(line):
		out = imapLoginRe.ReplaceAllString(line, "$1 ***")
		r.inSASL = true // a password sent as a literal follows on the next line
	}
	if r.secret != "" && strings.Contains(out, r.secret) {
		out = strings.ReplaceAll(out, r.secret, "***")
	}
	return out
}
