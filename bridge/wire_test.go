package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReadCommand(t *testing.T) {
	cases := []struct {
		in      string
		tag     string
		name    string
		args    []string
		conts   int
		wantErr string // "" none; "syntax:<tag>" a *syntaxError with that tag; else the error text
	}{
		{in: "a1 CAPABILITY\r\n", tag: "a1", name: "CAPABILITY"},
		{in: "a1 login alice \"p w\\\"d\"\r\n", tag: "a1", name: "LOGIN", args: []string{"alice", `p w"d`}},
		{in: "a1 LOGIN {5}\r\nalice {3}\r\npwd\r\n", tag: "a1", name: "LOGIN", args: []string{"alice", "pwd"}, conts: 2},
		{in: "a1 LOGIN {5+}\r\nalice {3+}\r\npwd\r\n", tag: "a1", name: "LOGIN", args: []string{"alice", "pwd"}},
		{in: "a1 LOGIN {0}\r\n {0}\r\n\r\n", tag: "a1", name: "LOGIN", args: []string{"", ""}, conts: 2},
		{in: "a1 AUTHENTICATE PLAIN AGFsaWNlAHB3ZA==\r\n", tag: "a1", name: "AUTHENTICATE", args: []string{"PLAIN", "AGFsaWNlAHB3ZA=="}},
		{in: "a1 ID (\"name\" \"Mozilla Thunderbird\")\r\n", tag: "a1", name: "ID", args: []string{`("name"`, "Mozilla Thunderbird", ")"}},
		{in: "\r\n", wantErr: "syntax:*"},
		{in: "a1\r\n", wantErr: "syntax:a1"},
		{in: "a1 LOGIN \"open\r\n", wantErr: "syntax:a1"},
		{in: "\x01bad CAPABILITY\r\n", wantErr: "syntax:*"},
		{in: "a+ NOOP\r\n", wantErr: "syntax:*"},
		{in: "a1 LOGIN {99999}\r\n", wantErr: "syntax:a1"},
		{in: "a1 LOGIN {99999+}\r\n", wantErr: errLiteralTooLarge.Error()},
		{in: "a1 LOGIN {5}\r\nal", wantErr: io.ErrUnexpectedEOF.Error(), conts: 1},
		{in: "a1 LOGIN {3}\r\nabcdef\r\n", wantErr: "syntax:a1", conts: 1},
		{in: "a1 NOOP", wantErr: io.ErrUnexpectedEOF.Error()},
		// Cases found by fuzzing:
		{in: "0 {0}\n\n", wantErr: "syntax:0", conts: 1},
		{in: "a1 " + strings.Repeat("x", maxCommandLine) + "\r\n", wantErr: errLineTooLong.Error()},
	}
	for _, c := range cases {
		conts := 0
		cmd, err := readCommand(bufio.NewReader(strings.NewReader(c.in)), func() error { conts++; return nil })
		var se *syntaxError
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case strings.HasPrefix(c.wantErr, "syntax:"):
			if !errors.As(err, &se) || "syntax:"+se.tag != c.wantErr {
				t.Errorf("%q: %v (%#v), want %s", c.in, err, se, c.wantErr)
			}
		case c.wantErr != "":
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%q: %v, want %s", c.in, err, c.wantErr)
			}
		default:
			if cmd.tag != c.tag || cmd.name != c.name || strings.Join(cmd.args, "|") != strings.Join(c.args, "|") {
				t.Errorf("%q: %+v, want %s %s %q", c.in, cmd, c.tag, c.name, c.args)
			}
		}
		if conts != c.conts {
			t.Errorf("%q: %d continuation requests, want %d", c.in, conts, c.conts)
		}
	}
}

func TestRewriteCapLine(t *testing.T) {
	cases := map[string]string{
		"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=EXTERNAL LOGINDISABLED IDLE COMPRESS=DEFLATE MOVE\r\n": "* CAPABILITY IMAP4rev1 IDLE MOVE\r\n",
		"* capability imap4rev1 starttls idle\r\n":                                                              "* CAPABILITY imap4rev1 idle\r\n",
		"a1 OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN UIDPLUS] Logged in\r\n":                                 "a1 OK [CAPABILITY IMAP4rev1 SASL-IR UIDPLUS] Logged in\r\n",
		"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n":                                                        "* OK [CAPABILITY IMAP4rev1] ready\r\n",
		"* OK [UIDVALIDITY 3] UIDs valid\r\n":                                                                   "* OK [UIDVALIDITY 3] UIDs valid\r\n",
		"* 3 FETCH (FLAGS (\\Seen))\r\n":                                                                        "* 3 FETCH (FLAGS (\\Seen))\r\n",
		"* OK [CAPABILITY IMAP4rev1 STARTTLS\r\n":                                                               "* OK [CAPABILITY IMAP4rev1 STARTTLS\r\n",
		"+ idling\r\n": "+ idling\r\n",
		"*\r\n":        "*\r\n",
	}
	for in, want := range cases {
		if got := string(rewriteCapLine([]byte(in))); got != want {
			t.Errorf("rewriteCapLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResponseCopier: capability lists are rewritten only at response starts; literals (message bodies that look
// like capability lines, across buffer boundaries) pass untouched; the copier knows when it stands between
// responses.
func TestResponseCopier(t *testing.T) {
	body := "* CAPABILITY STARTTLS AUTH=PLAIN\r\n" + strings.Repeat("x", 5000) + "\r\n"
	in := "* CAPABILITY IMAP4rev1 STARTTLS\r\n" +
		"* 1 FETCH (BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + " FLAGS (\\Seen))\r\n" +
		"a2 OK [CAPABILITY IMAP4rev1 AUTH=X] done\r\n" +
		"* 2 FETCH (BODY[] ~{3}\r\nabc)\r\n" +
		"* BYE bye\r\n"
	want := "* CAPABILITY IMAP4rev1\r\n" +
		"* 1 FETCH (BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + " FLAGS (\\Seen))\r\n" +
		"a2 OK [CAPABILITY IMAP4rev1] done\r\n" +
		"* 2 FETCH (BODY[] ~{3}\r\nabc)\r\n" +
		"* BYE bye\r\n"
	for _, size := range []int{16, 64, 4096} { // small buffers split lines and literal announcements
		var out bytes.Buffer
		rc := &responseCopier{dst: bufio.NewWriter(&out), src: bufio.NewReaderSize(strings.NewReader(in), size)}
		err := rc.run()
		if err != io.EOF {
			t.Errorf("buffer %d: %v, want io.EOF", size, err)
		}
		if out.String() != want {
			t.Errorf("buffer %d: copied\n%q\nwant\n%q", size, out.String(), want)
		}
		if !rc.atStart || !rc.sawBye {
			t.Errorf("buffer %d: atStart %v sawBye %v, want both", size, rc.atStart, rc.sawBye)
		}
	}
	// Cut inside a literal: not between responses.
	var out bytes.Buffer
	rc := &responseCopier{dst: bufio.NewWriter(&out), src: bufio.NewReader(strings.NewReader("* 1 FETCH (BODY[] {10}\r\nabc"))}
	if err := rc.run(); err == nil || rc.atStart {
		t.Errorf("cut literal: err %v atStart %v", err, rc.atStart)
	}
}

func TestWireText(t *testing.T) {
	cases := map[string]string{
		"La carte a été retirée pendant l'opération : vous avez été déconnecté.": "La carte a ete retiree pendant l'operation : vous avez ete deconnecte.",
		"Réinsérez la carte ; CardMail demandera le code.\n« Œuvre »":            "Reinserez la carte ; CardMail demandera le code. \" OEuvre \"",
		"l’adresse\u00a0: 数": "l'adresse : ?",
	}
	for in, want := range cases {
		got := wireText(in)
		if got != want {
			t.Errorf("wireText(%q) = %q, want %q", in, got, want)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x20 || got[i] >= 0x7f {
				t.Errorf("wireText(%q) has byte %#x", in, got[i])
			}
		}
	}
}

func TestEnhanced(t *testing.T) {
	for in, want := range map[string]string{
		"2.0.0 Ok: queued as 4XyZ": "2.0.0|Ok: queued as 4XyZ",
		"Ok: queued":               "2.0.0|Ok: queued",
		"2.6.0 <id@x> accepted":    "2.6.0|<id@x> accepted",
		"2.x.0 odd":                "2.0.0|2.x.0 odd",
	} {
		c, text := enhanced(in)
		got := strconv.Itoa(c[0]) + "." + strconv.Itoa(c[1]) + "." + strconv.Itoa(c[2]) + "|" + text
		if got != want {
			t.Errorf("enhanced(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzReadCommand: any input gives a command or an error, never a panic, and never more than the limits.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{"a1 LOGIN {5}\r\nalice {3+}\r\npwd\r\n", "a1 LOGIN \"a\\\"b\" c\r\n", "\r\n", "{1}\r\n\r\n",
		"a1 AUTHENTICATE PLAIN =\r\n", "a1 LOGIN {18446744073709551616}\r\n", "x {-1}\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		cmd, err := readCommand(bufio.NewReader(strings.NewReader(in)), func() error { return nil })
		if err == nil && (cmd.tag == "" || cmd.name == "" || !validTag(cmd.tag)) {
			t.Fatalf("%q: accepted %+v", in, cmd)
		}
		if err == nil {
			for _, a := range cmd.args {
				if len(a) > maxCommandLine+maxLiteral {
					t.Fatalf("%q: argument of %d bytes", in, len(a))
				}
			}
		}
	})
}

// FuzzResponseCopier: whatever the server sends, the copier passes every byte through except capability names it
// drops, never panics, and ends with the input.
func FuzzResponseCopier(f *testing.F) {
	for _, s := range []string{"* CAPABILITY IMAP4rev1 STARTTLS\r\n", "* 1 FETCH (BODY[] {3}\r\nabc)\r\n",
		"a OK [CAPABILITY X AUTH=Y] z\r\n", "{99999999999}\r\n", "* OK [CAPABILITY\r\n", "~{2}\r\n\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		rc := &responseCopier{dst: bufio.NewWriter(&out), src: bufio.NewReaderSize(strings.NewReader(in), 16)}
		_ = rc.run()
		if out.Len() > len(in) {
			t.Fatalf("%q: copied %d bytes from %d", in, out.Len(), len(in))
		}
		if !strings.Contains(strings.ToUpper(in), "CAPABILITY") && out.String() != in {
			t.Fatalf("%q: changed to %q without a capability line", in, out.String())
		}
		if utf8.ValidString(in) && !utf8.ValidString(out.String()) && !strings.Contains(strings.ToUpper(in), "CAPABILITY") {
			t.Fatalf("%q: output not valid UTF-8", in)
		}
	})
}
