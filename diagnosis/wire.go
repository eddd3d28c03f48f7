package diagnosis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of what the ladder reads from a server, so that a hostile or broken server cannot exhaust memory.
const (
	maxLine     = 64 << 10 // one protocol line
	maxLiteral  = 1 << 20  // one IMAP literal
	maxLogLines = 400      // protocol log lines kept (the rest is counted)
	maxLogLine  = 300      // bytes of one logged line
)

// Redacted replaces secrets and credentials in the protocol log and in reports.
const Redacted = "<redacted>"

// ErrLineTooLong: a server line exceeded the ladder's limit.
var ErrLineTooLong = errors.New("server line too long")

// protoLog is the redacted protocol log of one run: "C: " lines the client sent, "S: " lines the server sent.
// Client lines that carry credentials are logged with their arguments replaced by Redacted; message bodies are not
// logged at all. Safe for concurrent use.
type protoLog struct {
	mu      sync.Mutex
	lines   []string
	dropped int
	secrets []string
}

func (l *protoLog) add(prefix, line string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) >= maxLogLines {
		l.dropped++
		return
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) > maxLogLine {
		line = line[:maxLogLine] + "…"
	}
	l.lines = append(l.lines, prefix+printable(redactSecrets(line, l.secrets)))
}

// snapshot returns the log lines, with a last line counting the dropped ones.
func (l *protoLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string{}, l.lines...)
	if l.dropped > 0 {
		out = append(out, fmt.Sprintf("… %d more lines", l.dropped))
	}
	return out
}

// redactSecrets replaces every occurrence of each non-empty secret in s.
func redactSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// wire is a line-oriented client connection with deadlines and logging. Every read and write has the step timeout.
type wire struct {
	conn    net.Conn
	r       *bufio.Reader
	log     *protoLog
	timeout time.Duration
}

func newWire(c net.Conn, log *protoLog, timeout time.Duration) *wire {
	return &wire{conn: c, r: bufio.NewReaderSize(c, 4096), log: log, timeout: timeout}
}

// rebind switches the wire to a new conn (after STARTTLS); buffered plaintext bytes would be a protocol violation
// (a STARTTLS response injection), so they are an error.
func (w *wire) rebind(c net.Conn) error {
	if n := w.r.Buffered(); n > 0 {
		return fmt.Errorf("%d plaintext bytes after the STARTTLS answer: %w", n, errInjection)
	}
	w.conn = c
	w.r = bufio.NewReaderSize(c, 4096)
	return nil
}

var errInjection = errors.New("data injected before TLS")

// readLine reads one CRLF- (or LF-) terminated line within timeout, logs it and returns it without the line end.
func (w *wire) readLine(timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = w.timeout
	}
	_ = w.conn.SetReadDeadline(time.Now().Add(timeout))
	var b []byte
	for {
		chunk, err := w.r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxLine {
			return "", ErrLineTooLong
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(b) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if len(b) > 0 {
			w.log.add("S: ", string(b))
		}
		return "", err
	}
	line := strings.TrimRight(string(b), "\r\n")
	w.log.add("S: ", line)
	return line, nil
}

// readIMAP reads one logical IMAP response line: literals ({n} at the end of a line, RFC 9051 section 4.3) are
// read and inlined as quoted strings, so the result is one line for parseIMAP.
func (w *wire) readIMAP() (string, error) {
	var sb strings.Builder
	for {
		line, err := w.readLine(0)
		if err != nil {
			return "", err
		}
		n, head, ok := literalSuffix(line)
		if !ok {
			sb.WriteString(line)
			return sb.String(), nil
		}
		if n > maxLiteral {
			return "", fmt.Errorf("literal of %d bytes: %w", n, ErrLineTooLong)
		}
		sb.WriteString(head)
		buf := make([]byte, n)
		_ = w.conn.SetReadDeadline(time.Now().Add(w.timeout))
		if _, err := io.ReadFull(w.r, buf); err != nil {
			return "", err
		}
		w.log.add("S: ", fmt.Sprintf("<literal %d bytes>", n))
		sb.WriteString(strconv.Quote(string(buf)))
		if sb.Len() > maxLine {
			return "", ErrLineTooLong
		}
	}
}

// literalSuffix recognises a line ending in {n} or {n+}; head is the line without it.
func literalSuffix(line string) (n int, head string, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, "", false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, "", false
	}
	num := strings.TrimSuffix(line[i+1:len(line)-1], "+")
	v, err := strconv.Atoi(num)
	if err != nil || v < 0 {
		return 0, "", false
	}
	return v, line[:i], true
}

// writeLine sends line+CRLF; logged is what the log shows (the line itself, or a redacted form).
func (w *wire) writeLine(line, logged string) error {
	w.log.add("C: ", logged)
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	_, err := io.WriteString(w.conn, line+"\r\n")
	return err
}

// send writes a line that carries no secret.
func (w *wire) send(line string) error { return w.writeLine(line, line) }

// greetingConn is a net.Conn whose first reads return a synthetic server greeting before the real stream. A client
// library that expects a greeting (go-imap, go-smtp) can then be handed a connection on which the ladder already did
// a manual STARTTLS, after which the server sends no second greeting.
type greetingConn struct {
	net.Conn
	pending []byte
}

// WithGreeting returns c wrapped so that reads first yield greeting+CRLF (for IMAP "* OK ready", for SMTP
// "220 ready"), then the data of c. Writes, deadlines and Close go to c.
func WithGreeting(c net.Conn, greeting string) net.Conn {
	return &greetingConn{Conn: c, pending: []byte(greeting + "\r\n")}
}

func (g *greetingConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}
