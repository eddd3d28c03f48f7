package mail

import (
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/tlspolicy"
)

func TestChooseMechanism(t *testing.T) {
	all := map[string]bool{"EXTERNAL": true, "LOGIN": true, "PLAIN": true}
	plainOnly := map[string]bool{"PLAIN": true}
	none := map[string]bool{}
	cases := []struct {
		mode     profile.Login
		offered  map[string]bool
		loginCmd bool
		want     string
		wantErr  bool
	}{
		{profile.LoginAuto, all, true, "EXTERNAL", false},
		{"", all, false, "EXTERNAL", false},
		{profile.LoginAuto, plainOnly, true, "LOGIN", false}, // IMAP LOGIN command
		{profile.LoginAuto, plainOnly, false, "PLAIN", false},
		{profile.LoginAuto, map[string]bool{"LOGIN": true}, false, "LOGIN", false},
		{profile.LoginAuto, none, false, "", true},
		{profile.LoginExternal, plainOnly, true, "", true},
		{profile.LoginExternal, all, true, "EXTERNAL", false},
		{profile.LoginLogin, all, true, "LOGIN", false},
		{profile.LoginLogin, plainOnly, false, "", true},
		{profile.LoginPlain, all, false, "PLAIN", false},
		{profile.LoginPlain, none, true, "", true},
		{"kerberos", all, true, "", true},
	}
	for _, c := range cases {
		got, err := chooseMechanism(c.mode, c.offered, c.loginCmd)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("chooseMechanism(%q, %v, %v) = %q, %v", c.mode, c.offered, c.loginCmd, got, err)
		}
		var ae *AuthError
		if err != nil && c.mode != "kerberos" && (!errors.As(err, &ae) || !errors.Is(err, ErrMechanismNotOffered)) {
			t.Errorf("%q: error %v is not an *AuthError wrapping ErrMechanismNotOffered", c.mode, err)
		}
	}
}

func TestPageRange(t *testing.T) {
	cases := []struct {
		total      uint32
		page, size int
		lo, hi     uint32
		ok         bool
	}{
		{0, 0, 10, 0, 0, false},
		{7, 0, 3, 5, 7, true},
		{7, 1, 3, 2, 4, true},
		{7, 2, 3, 1, 1, true},
		{7, 3, 3, 0, 0, false},
		{3, 0, 3, 1, 3, true},
		{3, 0, 50, 1, 3, true},
		{1, 0, 1, 1, 1, true},
		{10, -1, 3, 0, 0, false},
		{10, 0, 0, 0, 0, false},
		{4294967295, 0, 1000, 4294966296, 4294967295, true},
		{4294967295, 1 << 40, 1000, 0, 0, false},
	}
	for _, c := range cases {
		lo, hi, ok := pageRange(c.total, c.page, c.size)
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("pageRange(%d, %d, %d) = %d, %d, %v; want %d, %d, %v", c.total, c.page, c.size, lo, hi, ok,
				c.lo, c.hi, c.ok)
		}
	}
}

func FuzzPageRange(f *testing.F) {
	f.Add(uint32(7), 1, 3)
	f.Add(uint32(0), 0, 1)
	f.Add(^uint32(0), 4294967, 1000)
	f.Fuzz(func(t *testing.T, total uint32, page, size int) {
		lo, hi, ok := pageRange(total, page, size)
		if !ok {
			return
		}
		if lo < 1 || hi > total || lo > hi || int64(hi-lo+1) > int64(size) {
			t.Fatalf("pageRange(%d, %d, %d) = [%d, %d]", total, page, size, lo, hi)
		}
		if uint64(total)-uint64(hi) != uint64(page)*uint64(size) {
			t.Fatalf("page %d of %d does not start %d below the newest: hi %d", page, size, page*size, hi)
		}
	})
}

func TestRedactLine(t *testing.T) {
	const pw = "hunter2pw"
	const R = Redacted
	cases := []struct {
		name  string
		proto string
		lines []string
		want  []string // "" = line dropped
	}{
		{"imap login", ProtoIMAP, []string{`T1 LOGIN "a@b" "hunter2pw"`, "T1 OK done"}, []string{"T1 LOGIN " + R, "T1 OK"}},
		{"imap login literal", ProtoIMAP, []string{"T1 LOGIN {3}", "+ go", "a@b {9}", "+ go", "hunter2pw", "T1 OK"},
			[]string{"T1 LOGIN " + R, "+", R, "+", R, "T1 OK"}},
		{"imap plain ir", ProtoIMAP, []string{"T2 AUTHENTICATE PLAIN AGFAYgBodW50ZXIycHc=", "T2 OK", "T3 LIST \"\" \"*\""},
			[]string{"T2 AUTHENTICATE PLAIN " + R, "T2 OK", "T3 LIST"}},
		{"imap plain cont", ProtoIMAP, []string{"T2 AUTHENTICATE PLAIN", "+ ", "AGFAYgBodW50ZXIycHc=", "T2 NO bad", "T3 NOOP"},
			[]string{"T2 AUTHENTICATE PLAIN", "+", R, "T2 NO", "T3 NOOP"}},
		{"imap names and codes", ProtoIMAP, []string{
			`* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=EXTERNAL] Dovecot ready.`,
			`T1 CAPABILITY`,
			`* CAPABILITY IMAP4rev1 LIST-STATUS`,
			`T4 LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))`,
			`* LIST (\HasNoChildren) "." "Dossier-&AMk-lo&AO8-se"`,
			`* LIST (\HasNoChildren) "." {14}`,
			`Patient Dupont`,
			`* STATUS "Patient Dupont" (MESSAGES 3 UNSEEN 1)`,
			`T5 STATUS "Patient Dupont" (MESSAGES UNSEEN)`,
			`T5 NO [NONEXISTENT] Mailbox doesn't exist: Patient Dupont`,
			`* 3 EXISTS`,
			`* BYE Logging out`,
		}, []string{"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=EXTERNAL]", "T1 CAPABILITY", "* CAPABILITY IMAP4rev1 LIST-STATUS",
			"T4 LIST", "* LIST", "* LIST", "", "* STATUS", "T5 STATUS", "T5 NO [NONEXISTENT]", "* 3 EXISTS", "* BYE"}},
		{"imap glued by pipelining", ProtoIMAP, []string{`* CAPABILITY IMAP4T7 STATUS "Dupont" (MESSAGES UNSEEN)`},
			[]string{"* CAPABILITY"}},
		{"smtp login", ProtoSMTP, []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", "YUBi", "334 UGFzc3dvcmQ6", "aHVudGVyMnB3", "235 ok", "MAIL FROM:<a@b>"},
			[]string{"AUTH LOGIN", "334", R, "334", R, "235", "MAIL FROM"}},
		{"smtp external", ProtoSMTP, []string{"AUTH EXTERNAL =", "235 2.7.0 Logged in."}, []string{"AUTH EXTERNAL " + R, "235 2.7.0"}},
		{"smtp dialogue", ProtoSMTP, []string{"220 mail.example ESMTP", "EHLO localhost", "250-mail.example Hello alice@example.org",
			"250-AUTH PLAIN EXTERNAL", "250-SIZE 1024", "250 8BITMIME", "MAIL FROM:<alice@example.org> BODY=8BITMIME",
			"250 2.1.0 <alice@example.org> Sender OK", "RCPT TO:<bob@example.org>", "553 5.7.1 <bob@example.org>: rejected",
			"DATA", "354 go ahead", "From: <alice@example.org>", "Subject: Patient Dupont", "", "DATA is here", ".",
			"250 2.0.0 Ok: queued as ABC", "QUIT", "221 2.0.0 Bye"},
			[]string{"220", "EHLO localhost", "250-", "250-AUTH PLAIN EXTERNAL", "250-SIZE 1024", "250 8BITMIME", "MAIL FROM",
				"250 2.1.0", "RCPT TO", "553 5.7.1", "DATA", "354", "", "", "", "", BodyOmitted, "250 2.0.0", "QUIT", "221 2.0.0"}},
		{"secret anywhere", ProtoIMAP, []string{"* CAPABILITY hunter2pw"}, []string{"* CAPABILITY " + R}},
		{"plain traffic", ProtoIMAP, []string{"* OK ready", "T1 CAPABILITY"}, []string{"* OK", "T1 CAPABILITY"}},
	}
	for _, c := range cases {
		var got []string
		w := NewLogWriter(c.proto, func(l string) { got = append(got, l) }, pw).(*logWriter)
		for i, l := range c.lines {
			got = got[:0]
			w.r.emit(l)
			want := []string{}
			if c.want[i] != "" {
				want = []string{c.want[i]}
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%s: line %d %q → %q, want %q", c.name, i, l, got, want)
			}
		}
	}
}

// FuzzRedact: whatever the dialogue, neither the password nor a mailbox name (a quoted string or a literal) comes
// out of the log writer.
func FuzzRedact(f *testing.F) {
	f.Add("T1 LOGIN a@b pass\r\nT1 OK\r\n", "pass", false)
	f.Add("AUTH PLAIN AGFAYgBwYXNz\r\n235 ok\r\n", "pass", true)
	f.Add("T1 LOGIN {4}\r\n+ go\r\npass\r\n", "pass", false)
	f.Add("* LIST () \".\" \"Dupont\"\r\n* STATUS {6}\r\nDupont (MESSAGES 1)\r\n", "Dupont", false)
	f.Add("MAIL FROM:<Dupont@x>\r\n250 2.1.0 <Dupont@x> ok\r\n", "Dupont", true)
	f.Fuzz(func(t *testing.T, dialogue, pw string, smtp bool) {
		if len(pw) < 4 || strings.ContainsAny(pw, "<>") {
			return
		}
		proto := ProtoIMAP
		if smtp {
			proto = ProtoSMTP
		}
		var out []string
		w := NewLogWriter(proto, func(l string) { out = append(out, l) }, pw)
		// Feed in two chunks to exercise line reassembly.
		mid := len(dialogue) / 2
		w.Write([]byte(dialogue[:mid]))
		w.Write([]byte(dialogue[mid:]))
		for _, l := range out {
			if strings.Contains(l, pw) || strings.Contains(l, `"`) || strings.Contains(l, "@") {
				t.Fatalf("%q in log line %q", pw, l)
			}
		}
	})
}

func TestNewTestMessage(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, body := range []string{"", "Bonjour,\nceci est un test — é\n"} {
		m, err := newTestMessage("alice@example.org", "bob@example.org", now, body)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(strings.NewReader(string(m.Raw)))
		if err != nil {
			t.Fatal(err)
		}
		h := msg.Header
		if h.Get("Subject") != TestSubject || h.Get("From") != "<alice@example.org>" ||
			h.Get("To") != "<bob@example.org>" || h.Get("Message-Id") != "<"+m.MessageID+">" {
			t.Errorf("headers %v", h)
		}
		if d, err := h.Date(); err != nil || !d.Equal(now) {
			t.Errorf("date %v %v", d, err)
		}
		if !strings.HasSuffix(m.MessageID, "@example.org") || strings.Contains(string(m.Raw), "\r\r") ||
			strings.Count(string(m.Raw), "\n") != strings.Count(string(m.Raw), "\r\n") {
			t.Errorf("message %q", m.Raw)
		}
	}
	a, _ := newTestMessage("a@x", "b@y", now, "")
	b, _ := newTestMessage("a@x", "b@y", now, "")
	if a.MessageID == b.MessageID {
		t.Error("two messages share a Message-ID")
	}
}

func TestSortFolders(t *testing.T) {
	fs := []Folder{{Name: "b"}, {Name: "Inbox"}, {Name: "a"}, {Name: "Résumé & co"}}
	sortFolders(fs)
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "Inbox,a,b,Résumé & co" {
		t.Errorf("order %s", got)
	}
}

func TestAccountCheckAndString(t *testing.T) {
	p := &tlspolicy.Policy{}
	ok := Account{Address: "a@b", IMAP: profile.Server{Host: "h", Port: 993, Security: profile.Implicit}, Policy: p, Password: "s3cr3t"}
	cases := []struct {
		name  string
		mod   func(*Account)
		field string
	}{
		{"ok", func(*Account) {}, ""},
		{"no policy", func(a *Account) { a.Policy = nil }, "Policy"},
		{"no host", func(a *Account) { a.IMAP.Host = " " }, "Host"},
		{"port", func(a *Account) { a.IMAP.Port = 70000 }, "Port"},
		{"security", func(a *Account) { a.IMAP.Security = "ssl" }, "Security"},
		{"auth", func(a *Account) { a.Auth = "gssapi" }, "Auth"},
		{"address", func(a *Account) { a.Address = "a@b\r\nX" }, "Address"},
	}
	for _, c := range cases {
		a := ok
		c.mod(&a)
		err := a.check(a.IMAP)
		var ce *ConfigError
		if c.field == "" && err != nil || c.field != "" && (!errors.As(err, &ce) || ce.Field != c.field) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	for _, s := range []string{ok.String(), fmt.Sprintf("%v %+v %#v", ok, ok, ok)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("password printed: %s", s)
		}
	}
}

// TestDialogueLog: with one writer per direction, a server line cut by a pipelined client command stays whole, and
// the SASL state crosses directions (the client's payload is redacted until the server's final answer).
func TestDialogueLog(t *testing.T) {
	var got []string
	sent, received := NewDialogueLog(ProtoIMAP, func(l string) { got = append(got, l) }, "hunter2pw")
	for _, step := range []struct {
		w    io.Writer
		data string
	}{
		{sent, "T1 AUTHENTICATE PLAIN\r\n"}, {received, "+ \r\n"}, {sent, "AGFAYgBodW50ZXIycHc=\r\n"},
		{received, "T1 OK done\r\n"}, {sent, "T2 STATUS \"A\" (MESSAGES)\r\n"}, {received, "* STATUS \"A\" (MESS"},
		{sent, "T3 STATUS \"Dupont\" (MESSAGES)\r\n"}, {received, "AGES 1)\r\n* CAPABILITY IMAP4rev1\r\n"},
	} {
		if _, err := step.w.Write([]byte(step.data)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"T1 AUTHENTICATE PLAIN", "+", Redacted, "T1 OK", "T2 STATUS", "T3 STATUS", "* STATUS", "* CAPABILITY IMAP4rev1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log %q, want %q", got, want)
	}
}
