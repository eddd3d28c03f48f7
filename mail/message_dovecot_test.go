package mail_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/mail"
)

// testMessage delivers a multipart message (Latin-1 text, HTML alternative, a PDF and a Latin-1 text file) and an
// HTML-only message that points at a remote image and a script, then opens both through a Pool on the real Dovecot:
// the envelope, the text, the attachments with their sizes, the exact bytes of each attachment, nothing marked as
// read, no request to the image's server, and ErrMessageGone for a message that is not there.
func testMessage(t *testing.T, f *fixture) {
	ctx := ctxT(t)
	alice := bench.DefaultEmail(bench.AliceName)

	var fetched atomic.Int32 // requests to the "remote" image server
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fetched.Add(1) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	pixel := "http://" + ln.Addr().String() + "/pixel.gif?patient=42"

	pdf := make([]byte, 150_000)
	if _, err := rand.Read(pdf); err != nil {
		t.Fatal(err)
	}
	// ISO-8859-1, must come back byte for byte (the CRLF before the boundary belongs to the boundary: RFC 2046 §5.1.1)
	note := []byte("Compte rendu : \xe9chographie normale.")
	var b64 strings.Builder
	enc := base64.StdEncoding.EncodeToString(pdf)
	for len(enc) > 76 {
		b64.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b64.WriteString(enc + "\r\n")
	multipart := "From: Dr Bruno Petit <bruno@cardmail.test>\r\nTo: " + alice + "\r\nCc: secretariat@cardmail.test\r\n" +
		"Subject: =?iso-8859-1?q?R=E9sultats_de_Mme_Dupont?=\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Bonjour,\r\nles r=E9sultats de Mme Dupont sont joints.\r\n" +
		"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version</p>\r\n--alt--\r\n" +
		"--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"resultats-dupont.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64.String() +
		"--outer\r\nContent-Type: text/plain; charset=iso-8859-1; name=\"note.txt\"\r\nContent-Disposition: attachment; filename=\"note.txt\"\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nCompte rendu : =E9chographie normale.\r\n--outer--\r\n"
	htmlOnly := "From: newsletter@cardmail.test\r\nTo: " + alice + "\r\nSubject: Lettre HTML\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		"<html><head><style>p{}</style><script>var leak='SCRIPT-TEXT'</script></head><body>" +
		"<p>Bonjour <b>Dr Martin</b></p><img src=\"" + pixel + "\" alt=\"logo\"><a href=\"https://phish.example/x\">votre banque</a></body></html>\r\n"
	f.dv.Deliver(t, alice, []byte(multipart))
	f.dv.Deliver(t, alice, []byte(htmlOnly))

	pool := mail.NewPool(f.d, -1)
	defer pool.Close()
	a := f.account(t, profile.Implicit, profile.LoginAuto)
	unseen := func() uint32 {
		fs, err := pool.Folders(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return folderNamed(fs, "INBOX").Unseen
	}
	before := unseen()
	hs, _, err := pool.Headers(ctx, a, "INBOX", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	find := func(subject string) mail.Header {
		for _, h := range hs {
			if h.Subject == subject {
				return h
			}
		}
		t.Fatalf("no message %q in INBOX", subject)
		return mail.Header{}
	}
	mh, hh := find("Résultats de Mme Dupont"), find("Lettre HTML")
	if mh.UIDValidity == 0 {
		t.Fatal("headers carry no UIDVALIDITY")
	}

	m, err := pool.Message(ctx, a, mh.Ref("INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Résultats de Mme Dupont" || m.From != "Dr Bruno Petit <bruno@cardmail.test>" ||
		fmt.Sprint(m.To) != "["+alice+"]" || fmt.Sprint(m.Cc) != "[secretariat@cardmail.test]" || m.Date.IsZero() {
		t.Errorf("envelope %+v", m)
	}
	if m.Text != "Bonjour,\nles résultats de Mme Dupont sont joints." || m.FromHTML || m.Truncated {
		t.Errorf("text %q (from HTML %v, truncated %v)", m.Text, m.FromHTML, m.Truncated)
	}
	if len(m.Attachments) != 2 {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	pa, na := m.Attachments[0], m.Attachments[1]
	if pa.Name != "resultats-dupont.pdf" || pa.Type != "application/pdf" || na.Name != "note.txt" {
		t.Errorf("attachments %+v", m.Attachments)
	}
	if d := pa.Size - int64(len(pdf)); d < -100 || d > 100 {
		t.Errorf("PDF size %d, real %d", pa.Size, len(pdf))
	}
	for _, c := range []struct {
		att  mail.Attachment
		want []byte
	}{{pa, pdf}, {na, note}} {
		var buf bytes.Buffer
		n, err := pool.Attachment(ctx, a, m.Ref, c.att.Part, &buf)
		if err != nil || n != int64(len(c.want)) || !bytes.Equal(buf.Bytes(), c.want) {
			t.Errorf("attachment %s: %d bytes, %v; equal %v", c.att.Name, n, err, bytes.Equal(buf.Bytes(), c.want))
		}
	}
	if _, err := pool.Attachment(ctx, a, m.Ref, []int{1, 1}, &bytes.Buffer{}); !errors.Is(err, mail.ErrNoSuchPart) {
		t.Errorf("the text part as an attachment: %v, want ErrNoSuchPart", err)
	}

	hm, err := pool.Message(ctx, a, hh.Ref("INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	if !hm.FromHTML || !strings.Contains(hm.Text, "Bonjour Dr Martin") || !strings.Contains(hm.Text, "[logo]") ||
		!strings.Contains(hm.Text, "votre banque <https://phish.example/x>") || strings.Contains(hm.Text, "SCRIPT-TEXT") ||
		len(hm.Attachments) != 0 {
		t.Errorf("HTML message text %q, attachments %+v", hm.Text, hm.Attachments)
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the remote image was requested %d times", n)
	}
	if after := unseen(); after != before {
		t.Errorf("unseen messages %d before, %d after opening: a message was marked as read", before, after)
	}

	gone := mh.Ref("INBOX")
	gone.UID += 1000
	if _, err := pool.Message(ctx, a, gone); !errors.Is(err, mail.ErrMessageGone) {
		t.Errorf("missing UID: %v, want ErrMessageGone", err)
	}
	stale := mh.Ref("INBOX")
	stale.UIDValidity++
	if _, err := pool.Message(ctx, a, stale); !errors.Is(err, mail.ErrMessageGone) {
		t.Errorf("other UIDVALIDITY: %v, want ErrMessageGone", err)
	}
	if st := pool.Stats(); st.Dials != 1 {
		t.Errorf("pool %+v: everything must go through one connection (one card login)", st)
	}
}
