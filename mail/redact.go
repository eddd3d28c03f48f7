package mail

import (
	"bytes"
	"encoding/base64"
	"io"
	"regexp"
	"strings"
	"sync"
)

// Redacted stands in logs, errors and reports for a credential (a password, a SASL payload).
const Redacted = "<redacted>"

// BodyOmitted replaces the text of a message in the protocol log.
const BodyOmitted = "<message body omitted>"

// Protocols a log writer can speak.
const (
	ProtoIMAP = "imap"
	ProtoSMTP = "smtp"
)

// NewLogWriter returns the writer for go-imap's Options.DebugWriter or go-smtp's Client.DebugWriter (protocol is
// ProtoIMAP or ProtoSMTP) that turns the dialogue into protocol log lines for log. It is CardMail's one log policy:
// a line keeps the command or the response code, never what could identify a person or unlock an account.
//
//   - Credentials: LOGIN arguments, SASL initial responses and every client line of a SASL exchange (until the
//     server's final answer) become Redacted; each secret (and its base64 form) is replaced wherever it appears.
//   - IMAP: client lines keep their tag and command, with arguments only for commands whose arguments are the
//     client's own constants (CAPABILITY, STARTTLS, ENABLE ...); server lines keep "*", "+" or the tag, the status
//     or data type ("OK", "NO", "LIST", "3 EXISTS" ...), the response code in brackets, and capability lists. Mailbox
//     names, literals, flags and response texts are dropped.
//   - SMTP: client lines keep the command ("MAIL FROM", "RCPT TO", "AUTH PLAIN" ...) without addresses; server
//     lines keep the reply code and enhanced status code, plus the extension keywords of an EHLO reply. The message
//     text sent after DATA becomes one BodyOmitted line.
//   - Anything else (literal data, lines garbled by pipelining, which mixes both directions in one stream) is
//     dropped, so that the policy fails closed.
//
// Lines are emitted as they complete; the writer is safe for concurrent use (both directions write to it).
func NewLogWriter(protocol string, log func(string), secrets ...string) io.Writer {
	r := &redactor{log: log, smtp: protocol == ProtoSMTP}
	for _, s := range secrets {
		if s != "" {
			r.secrets = append(r.secrets, s, base64.StdEncoding.EncodeToString([]byte(s)))
		}
	}
	return &logWriter{r: r}
}

// NewDialogueLog returns the writers of one dialogue's protocol log, under the policy of NewLogWriter, for a caller
// that sees the two directions apart (a connection wrapper): sent takes what the client sends (write it before
// sending, so that a reply never comes first in the log), received what it receives. Each direction keeps its own
// lines, so pipelining cannot mix them; the policy's state (a SASL exchange, a message body) is shared. Both are
// safe for concurrent use.
func NewDialogueLog(protocol string, log func(string), secrets ...string) (sent, received io.Writer) {
	r := NewLogWriter(protocol, log, secrets...).(*logWriter).r
	return &logWriter{r: r}, &logWriter{r: r}
}

// Redact replaces every secret (and its base64 form) in s by Redacted.
func Redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		s = strings.ReplaceAll(s, sec, Redacted)
		s = strings.ReplaceAll(s, base64.StdEncoding.EncodeToString([]byte(sec)), Redacted)
	}
	return s
}

// logWriter splits the dialogue into lines for its redactor.
type logWriter struct {
	r   *redactor
	buf []byte
}

// maxLogLine bounds a line the writer keeps; longer input is cut (its end is dropped with the rest of the line).
const maxLogLine = 4096

func (w *logWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLogLine { // a long literal or body line: never keep it whole
				w.r.emit(string(w.buf[:maxLogLine]))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		w.r.emit(line)
	}
}

// redactor is the state of one dialogue's log policy.
type redactor struct {
	mu      sync.Mutex
	log     func(string)
	smtp    bool
	secrets []string
	inSASL  bool // a SASL exchange (or a LOGIN with literals) runs: client lines are credentials
	dataCmd bool // SMTP: the client sent DATA, the server's 354 starts the body
	inBody  bool // SMTP: the message text flows until "."
	inEHLO  bool // SMTP: the reply to EHLO lists extensions
	// ehloLines counts the lines of the EHLO reply seen so far.
	ehloLines int
}

// emit logs the policy's form of line, if any; r.mu is held.
func (r *redactor) emit(line string) {
	out, ok := r.redactLine(line)
	if ok && r.log != nil {
		r.log(out)
	}
}

var (
	// IMAP client command or tagged answer: tag, word, rest. Tags are letters then digits (go-imap: "T<n>").
	imapCmdRe = regexp.MustCompile(`^([A-Za-z]{0,4}[0-9]{1,9}) ([A-Za-z]+)(?: (.*))?$`)
	// IMAP server line: "* [n] TYPE rest", "tag STATUS rest", "+ text".
	imapUntaggedRe = regexp.MustCompile(`^\* (?:([0-9]+) )?([A-Za-z]+)(?: (.*))?$`)
	// A bracketed response code at the start of a response text.
	respCodeRe = regexp.MustCompile(`^\[([A-Za-z0-9.-]+)( [^\]]*)?\]`)
	// SMTP reply line: code, separator, enhanced status code.
	smtpReplyRe = regexp.MustCompile(`^([2-5][0-9][0-9])([ -]|$)(?:([2-5]\.[0-9]{1,3}\.[0-9]{1,3})(?: |$))?(.*)$`)
	// SMTP client command, case-insensitive.
	smtpCmdRe = regexp.MustCompile(`(?i)^(EHLO|HELO|LHLO|MAIL FROM|RCPT TO|DATA|RSET|QUIT|NOOP|STARTTLS|AUTH|VRFY|EXPN|HELP|BDAT)\b[: ]?(.*)$`)
	// Arguments that may be kept: atoms (capabilities, mechanisms, sizes), never quotes, brackets or non-ASCII.
	safeArgsRe = regexp.MustCompile(`^[A-Za-z0-9=+._-]+( [A-Za-z0-9=+._-]+)*$`)
	// EHLO reply keyword line.
	ehloKeywordRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)
)

// imapArgsKept are the IMAP commands whose arguments are the client's own constants.
var imapArgsKept = map[string]bool{"CAPABILITY": true, "NOOP": true, "LOGOUT": true, "STARTTLS": true,
	"ENABLE": true, "IDLE": true, "NAMESPACE": true, "UNSELECT": true, "CLOSE": true, "CHECK": true, "DONE": true}

// imapWords are the IMAP commands (RFC 9051 and the extensions CardMail may meet) and untagged data types a line may
// name; a line naming another word is dropped (it may be literal data).
var imapWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`CAPABILITY NOOP LOGOUT STARTTLS AUTHENTICATE LOGIN ENABLE ENABLED SELECT EXAMINE
		CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB NAMESPACE STATUS APPEND IDLE DONE CLOSE UNSELECT EXPUNGE
		SEARCH ESEARCH FETCH STORE COPY MOVE UID CHECK ID SORT THREAD GETQUOTA GETQUOTAROOT QUOTA QUOTAROOT GETACL ACL
		MYRIGHTS LISTRIGHTS GETMETADATA SETMETADATA METADATA COMPRESS FLAGS EXISTS RECENT VANISHED OK NO BAD PREAUTH BYE`) {
		imapWords[w] = true
	}
}

// imapStatus are the words that make "tag WORD" a server's tagged status rather than a client command.
var imapStatus = map[string]bool{"OK": true, "NO": true, "BAD": true, "PREAUTH": true, "BYE": true}

// redactLine returns the policy's form of one line and whether to log it; r.mu is held. It is the whole policy
// (table-tested and fuzzed).
func (r *redactor) redactLine(line string) (string, bool) {
	out, ok := r.shape(line)
	if !ok {
		return "", false
	}
	for _, s := range r.secrets {
		out = strings.ReplaceAll(out, s, Redacted)
	}
	return Printable(out), true
}

func (r *redactor) shape(line string) (string, bool) {
	if r.smtp {
		return r.smtpLine(line)
	}
	return r.imapLine(line)
}

func (r *redactor) imapLine(line string) (string, bool) {
	switch {
	case line == "+" || strings.HasPrefix(line, "+ "):
		return "+", true
	case strings.HasPrefix(line, "* "):
		m := imapUntaggedRe.FindStringSubmatch(line)
		if m == nil {
			return "", false
		}
		typ := strings.ToUpper(m[2])
		if !imapWords[typ] {
			return "", false
		}
		out := "* " + typ
		if m[1] != "" {
			out = "* " + m[1] + " " + typ
		}
		switch {
		case imapStatus[typ]:
			if typ == "BYE" {
				r.inSASL = false
			}
			return out + respCode(m[3]), true
		case (typ == "CAPABILITY" || typ == "ENABLED") && safeArgsRe.MatchString(m[3]):
			return out + " " + m[3], true
		}
		return out, true
	}
	m := imapCmdRe.FindStringSubmatch(line)
	if m == nil {
		if r.inSASL {
			return Redacted, true
		}
		return "", false
	}
	tag, word, args := m[1], strings.ToUpper(m[2]), m[3]
	if !imapWords[word] {
		if r.inSASL {
			return Redacted, true
		}
		return "", false
	}
	if imapStatus[word] { // the server's tagged answer ends a SASL exchange
		r.inSASL = false
		return tag + " " + word + respCode(args), true
	}
	if r.inSASL {
		return Redacted, true
	}
	switch word {
	case "LOGIN":
		r.inSASL = args == "" || strings.HasSuffix(args, "}") // a password sent as a literal follows
		return tag + " LOGIN " + Redacted, true
	case "AUTHENTICATE":
		r.inSASL = true
		mech, ir, _ := strings.Cut(args, " ")
		out := tag + " AUTHENTICATE"
		if safeArgsRe.MatchString(mech) {
			out += " " + mech
		}
		if ir != "" {
			out += " " + Redacted
		}
		return out, true
	}
	if imapArgsKept[word] && args != "" && safeArgsRe.MatchString(args) {
		return tag + " " + word + " " + args, true
	}
	return tag + " " + word, true
}

// respCode returns " [CODE]" for a response text that starts with a response code ("[CAPABILITY ...]" keeps its
// capabilities), else "".
func respCode(text string) string {
	m := respCodeRe.FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	code := strings.ToUpper(m[1])
	if code == "CAPABILITY" && safeArgsRe.MatchString(strings.TrimSpace(m[2])) {
		return " [CAPABILITY " + strings.TrimSpace(m[2]) + "]"
	}
	return " [" + code + "]"
}

func (r *redactor) smtpLine(line string) (string, bool) {
	if r.inBody {
		if line == "." {
			r.inBody = false
			return BodyOmitted, true
		}
		return "", false
	}
	if m := smtpReplyRe.FindStringSubmatch(line); m != nil {
		code, more, enh, text := m[1], m[2] == "-", m[3], strings.TrimSpace(m[4])
		var parts []string
		if enh != "" {
			parts = append(parts, enh)
		}
		if r.inEHLO && r.ehloLines > 0 { // an extension line (the first line names the server: dropped)
			kw, params, _ := strings.Cut(text, " ")
			if ehloKeywordRe.MatchString(kw) && strings.ToUpper(kw) == kw {
				parts = append(parts, kw)
				if params != "" && safeArgsRe.MatchString(params) {
					parts = append(parts, params)
				}
			}
		}
		if r.inEHLO {
			r.ehloLines++
		}
		out := code
		switch {
		case more:
			out += "-" + strings.Join(parts, " ")
		case len(parts) > 0:
			out += " " + strings.Join(parts, " ")
		}
		if !more {
			if r.dataCmd && code == "354" {
				r.inBody = true
			}
			if code != "334" {
				r.inSASL = false
			}
			r.inEHLO, r.dataCmd = false, false
		}
		return out, true
	}
	if r.inSASL {
		return Redacted, true
	}
	m := smtpCmdRe.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	cmd, args := strings.ToUpper(m[1]), strings.TrimSpace(m[2])
	switch cmd {
	case "EHLO", "HELO", "LHLO":
		r.inEHLO, r.ehloLines = true, 0
		if safeArgsRe.MatchString(args) {
			return cmd + " " + args, true
		}
	case "AUTH":
		r.inSASL = true
		mech, ir, _ := strings.Cut(args, " ")
		out := "AUTH"
		if safeArgsRe.MatchString(mech) {
			out += " " + strings.ToUpper(mech)
		}
		if ir != "" {
			out += " " + Redacted
		}
		return out, true
	case "DATA":
		r.dataCmd = true
	}
	return cmd, true
}

// Printable replaces control and non-ASCII bytes by '.', for server bytes shown in logs and reports.
func Printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '.'
		}
	}
	return string(b)
}
