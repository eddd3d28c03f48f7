package mail

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/tlspolicy"
)

func TestChooseMechanism(t *testing.T) {
	all := map[string]bool{"EXTERNAL": true, "LOGIN": true, "PLAIN": true}
	plainOnly := map[string]bool{"PLAIN": true}
	none := map[string]bool{}
	cases := []struct {
		mode     Auth
		offered  map[string]bool
		loginCmd bool
		want     string
		wantErr  bool
	}{
		{AuthAuto, all, true, "EXTERNAL", false},
		{"", all, false, "EXTERNAL", false},
		{AuthAuto, plainOnly, true, "LOGIN", false}, // IMAP LOGIN command
		{AuthAuto, plainOnly, false, "PLAIN", false},
		{AuthAuto, map[string]bool{"LOGIN": true}, false, "LOGIN", false},
		{AuthAuto, none, false, "", true},
		{AuthExternal, plainOnly, true, "", true},
		{AuthExternal, all, true, "EXTERNAL", false},
		{AuthLogin, all, true, "LOGIN", false},
		{AuthLogin, plainOnly, false, "", true},
		{AuthPlain, all, false, "PLAIN", false},
		{AuthPlain, none, true, "", true},
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
	cases := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"imap login", []string{`T1 LOGIN "a@b" "hunter2pw"`, "T1 OK done"}, []string{"T1 LOGIN ***", "T1 OK done"}},
		{"imap login literal", []string{"T1 LOGIN {3}", "+ go", "a@b {9}", "+ go", "hunter2pw", "T1 OK"},
			[]string{"T1 LOGIN ***", "+ go", "***", "+ go", "***", "T1 OK"}},
		{"imap plain ir", []string{"T2 AUTHENTICATE PLAIN AGFAYgBodW50ZXIycHc=", "T2 OK", "T3 LIST"},
			[]string{"T2 AUTHENTICATE PLAIN ***", "T2 OK", "T3 LIST"}},
		{"imap plain cont", []string{"T2 AUTHENTICATE PLAIN", "+ ", "AGFAYgBodW50ZXIycHc=", "T2 NO bad", "T3 NOOP"},
			[]string{"T2 AUTHENTICATE PLAIN", "+ ", "***", "T2 NO bad", "T3 NOOP"}},
		{"smtp login", []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", "YUBi", "334 UGFzc3dvcmQ6", "aHVudGVyMnB3", "235 ok", "MAIL FROM:<a@b>"},
			[]string{"AUTH LOGIN", "334 VXNlcm5hbWU6", "***", "334 UGFzc3dvcmQ6", "***", "235 ok", "MAIL FROM:<a@b>"}},
		{"smtp external", []string{"AUTH EXTERNAL =", "235 2.7.0 Logged in."}, []string{"AUTH EXTERNAL ***", "235 2.7.0 Logged in."}},
		{"secret anywhere", []string{"X hunter2pw Y"}, []string{"X *** Y"}},
		{"plain traffic", []string{"* OK ready", "T1 CAPABILITY"}, []string{"* OK ready", "T1 CAPABILITY"}},
	}
	for _, c := range cases {
		r := newRedactor(nil, pw)
		for i, l := range c.lines {
			if got := r.redactLine(l); got != c.want[i] {
				t.Errorf("%s: line %d %q → %q, want %q", c.name, i, l, got, c.want[i])
			}
		}
	}
}

// FuzzRedact: whatever the dialogue, the password never comes out of the log writer.
func FuzzRedact(f *testing.F) {
	f.Add("T1 LOGIN a@b pass\r\nT1 OK\r\n", "pass")
	f.Add("AUTH PLAIN AGFAYgBwYXNz\r\n235 ok\r\n", "pass")
	f.Add("T1 LOGIN {4}\r\n+ go\r\npass\r\n", "pass")
	f.Fuzz(func(t *testing.T, dialogue, pw string) {
		if pw == "" || strings.ContainsAny(pw, "*") {
			return
		}
		var out []string
		w := &logWriter{r: newRedactor(func(l string) { out = append(out, l) }, pw)}
		// Feed in two chunks to exercise line reassembly.
		mid := len(dialogue) / 2
		w.Write([]byte(dialogue[:mid]))
		w.Write([]byte(dialogue[mid:]))
		for _, l := range out {
			if strings.Contains(l, pw) {
				t.Fatalf("password %q in log line %q", pw, l)
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
	ok := Account{Address: "a@b", IMAP: Server{Host: "h", Port: 993, Security: Implicit}, Policy: p, Password: "s3cr3t"}
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
