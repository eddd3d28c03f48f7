package mail

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// listOnce serves one IMAP exchange on a pipe: a greeting, then the answer to the client's LIST, where the
// mailbox name is name sent as form (0 quoted, 1 literal, 2 atom). It returns the folders mail makes of it.
func listOnce(t *testing.T, name string, form uint8, delim byte) ([]Folder, error) {
	cli, srv := net.Pipe()
	deadline := time.Now().Add(5 * time.Second)
	_ = cli.SetDeadline(deadline)
	_ = srv.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.Close()
		fmt.Fprint(srv, "* OK [CAPABILITY IMAP4rev1] fuzz\r\n")
		line, err := bufio.NewReader(srv).ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(line, " ")
		var mbox string
		switch form % 3 {
		case 0:
			mbox = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
		case 1:
			mbox = fmt.Sprintf("{%d}\r\n%s", len(name), name)
		default:
			mbox = name
		}
		d := `"` + string(delim) + `"`
		if delim == 0 {
			d = "NIL"
		}
		fmt.Fprintf(srv, "* LIST (\\HasNoChildren) %s %s\r\n* LIST () %s INBOX\r\n%s OK done\r\n", d, mbox, d, tag)
	}()
	c := imapclient.New(cli, &imapclient.Options{})
	defer func() { c.Close(); <-done }()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, err
	}
	out := make([]Folder, 0, len(list))
	for _, l := range list {
		out = append(out, folderOf(l))
	}
	sortFolders(out)
	return out, nil
}

// FuzzFolderNames sends arbitrary mailbox names (modified UTF-7, UTF-8, escapes, literals) in a LIST answer
// through go-imap's client and mail's folder conversion and sorting: nothing may panic or hang, and when the
// answer parses, INBOX comes first.
func FuzzFolderNames(f *testing.F) {
	for _, s := range []string{"Sent", "Entw&APw-rfe", "&ZeVnLIqe-", "&-", "&", "&AGE", "&Jjo-!", "a/b/c", "INBOX.Trash",
		"caf\u00e9", "\"", `\`, "", "&AAA-", "&2D3cAA-"} {
		f.Add(s, uint8(0), byte('/'))
		f.Add(s, uint8(1), byte('.'))
	}
	f.Add("x", uint8(2), byte(0))
	f.Fuzz(func(t *testing.T, name string, form uint8, delim byte) {
		if delim == '"' || delim == '\\' || delim >= 0x80 || (delim < 0x20 && delim != 0) {
			delim = '/'
		}
		fs, err := listOnce(t, name, form, delim)
		if err != nil {
			return
		}
		if len(fs) == 0 || !strings.EqualFold(fs[0].Name, "INBOX") {
			t.Fatalf("INBOX not first in %+v", fs)
		}
	})
}

// TestFolderNamesDecoded checks that folder names arrive decoded from modified UTF-7, whatever form the server
// uses for the name.
func TestFolderNamesDecoded(t *testing.T) {
	cases := []struct{ wire, want string }{
		{"Entw&APw-rfe", "Entw\u00fcrfe"},
		{"&ZeVnLIqe-", "\u65e5\u672c\u8a9e"},
		{"Sent &- Drafts", "Sent & Drafts"},
		{"Archives/2024", "Archives/2024"},
	}
	for _, c := range cases {
		for form := uint8(0); form < 2; form++ {
			fs, err := listOnce(t, c.wire, form, '/')
			if err != nil {
				t.Fatalf("%q (form %d): %v", c.wire, form, err)
			}
			if len(fs) != 2 || fs[1].Name != c.want || fs[1].Delim != '/' {
				t.Errorf("%q (form %d): %+v, want %q", c.wire, form, fs, c.want)
			}
		}
	}
}
