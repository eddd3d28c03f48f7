package mail

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

func TestHTMLText(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"words and entities", `<p>Bonjour&nbsp;Dr&#160;Martin &amp; co,</p><p>le   résultat
			est <b>normal</b>.</p>`, "Bonjour\u00a0Dr\u00a0Martin & co,\n\nle résultat est normal.\n"},
		{"script style head and title hidden", `<html><head><title>T</title><style>p{color:red}</style>
			<script>alert("x")</script></head><body>Visible<script>document.write("no")</script></body></html>`,
			"Visible\n"},
		{"remote image shows its alt text only", `<p>Logo <img src="https://tracker.example/p.gif?id=42" alt="Clinique"></p>`,
			"Logo [Clinique]\n"},
		{"image without alt leaves nothing", `a<img src="http://x/y.png">b`, "ab\n"},
		{"link address shown when it differs", `<a href="https://evil.example/login">https://bank.example</a>`,
			"https://bank.example <https://evil.example/login>\n"},
		{"link address not repeated", `<a href="https://sante.example">https://sante.example</a>`, "https://sante.example\n"},
		{"mailto", `<a href="mailto:dr@sante.example">dr@sante.example</a> or <a href="mailto:x@y.example">here</a>`,
			"dr@sante.example or here <mailto:x@y.example>\n"},
		{"javascript link hidden", `<a href="javascript:alert(1)">click</a>`, "click\n"},
		{"lists and breaks", `<ul><li>one</li><li>two</li></ul>line<br>next`, "• one\n• two\n\nline\nnext\n"},
		{"table cells", `<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>`, "a  b\nc\n"},
		{"pre keeps spaces", "<pre>a   b\n  c</pre>after", "a   b\n  c\n\nafter\n"},
		{"divs are lines, not paragraphs", `<div>a</div><div>b</div>`, "a\nb\n"},
		{"bidi override removed", "<p>invoice\u202Efdp.exe</p>", "invoicefdp.exe\n"},
		{"unclosed and broken", `<p><b>a<i>b</p><script>never closed`, "ab\n"},
		{"empty", ``, "\n"},
		// Cases found by fuzzing:
		{"nested links", `<a>0<A>00`, "000\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := HTMLText(strings.NewReader(c.in)); got != c.want {
				t.Errorf("HTMLText(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

// FuzzHTMLText: any input gives valid UTF-8 without control characters other than newline and tab, and no text
// from inside a script element.
func FuzzHTMLText(f *testing.F) {
	f.Add(`<p>a<script>secret</script>b</p>`)
	f.Add(`<a href="https://x">y</a><img alt="z">`)
	f.Add("<pre>\x00\x1b[31m</pre>")
	f.Fuzz(func(t *testing.T, in string) {
		out := HTMLText(strings.NewReader(in))
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 %q", out)
		}
		for _, r := range out {
			if r < 0x20 && r != '\n' && r != '\t' {
				t.Fatalf("control character %U in %q", r, out)
			}
		}
		if strings.Contains(in, "<script>SECRET</script>") && !strings.Contains(strings.ReplaceAll(in, "<script>SECRET</script>", ""), "SECRET") &&
			strings.Contains(out, "SECRET") {
			t.Fatalf("script content shown: %q", out)
		}
	})
}

func TestDecodeText(t *testing.T) {
	cases := []struct {
		name, header, body, want string
	}{
		{"quoted-printable latin-1", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
			"R=E9sultat d'analyse =E0 voir", "Résultat d'analyse à voir"},
		{"base64 windows-1252", "Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			"k2NvbnN1bHRhdGlvbpSgMTAwgA==", "“consultation”\u00a0100€"},
		{"base64 cut in the middle", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			"Qm9uam91ciBsZSBtb25kZQ==", "Bonjour le monde"},
		{"truncated base64 keeps what decodes", "Content-Transfer-Encoding: base64\r\n\r\n", "Qm9uam91ciBsZSBt", "Bonjour le m"},
		{"unknown charset kept as is", "Content-Type: text/plain; charset=x-unknown\r\n\r\n", "plain", "plain"},
		{"invalid utf-8 replaced", "Content-Type: text/plain; charset=utf-8\r\n\r\n", "a\xffb", "a\uFFFDb"},
		{"no header", "", "just text", "just text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeText([]byte(c.header), []byte(c.body))
			if err != nil || got != c.want {
				t.Errorf("DecodeText = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestSafeFileName(t *testing.T) {
	cases := []struct {
		in, mediaType, want string
	}{
		{"compte-rendu.pdf", "application/pdf", "compte-rendu.pdf"},
		{"../../etc/passwd", "text/plain", "passwd"},
		{`C:\Users\x\AppData\evil.lnk`, "", "evil.lnk"},
		{"a\x00b\x1b.txt", "", "ab.txt"},
		{"résumé\u202Egpj.exe", "", "résumégpj.exe"},
		{`what?<>:"|*.doc`, "", "what_______.doc"},
		{"..", "application/pdf", "attachment-3.pdf"},
		{"", "message/rfc822", "attachment-3.eml"},
		{"   ", "application/x-unknown-thing", "attachment-3"},
		{".bashrc", "", "bashrc"},
		{"-rf", "", "rf"},
		{"CON.txt", "", "_CON.txt"},
		{strings.Repeat("é", 100) + ".pdf", "", strings.Repeat("é", 58) + ".pdf"},
	}
	for _, c := range cases {
		if got := SafeFileName(c.in, 2, c.mediaType); got != c.want {
			t.Errorf("SafeFileName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzSafeFileName(f *testing.F) {
	f.Add("../a/b.pdf", "application/pdf")
	f.Add("\\\\server\\share\\x", "")
	f.Fuzz(func(t *testing.T, in, mt string) {
		got := SafeFileName(in, 0, mt)
		if got == "" || len(got) > 140 || strings.ContainsAny(got, `/\<>:"|?*`) || strings.HasPrefix(got, ".") ||
			!utf8.ValidString(got) {
			t.Fatalf("SafeFileName(%q) = %q", in, got)
		}
	})
}

func TestParts(t *testing.T) {
	text := func(sub string) *imap.BodyStructureSinglePart {
		return &imap.BodyStructureSinglePart{Type: "text", Subtype: sub, Encoding: "quoted-printable", Size: 100}
	}
	pdf := &imap.BodyStructureSinglePart{Type: "application", Subtype: "pdf", Encoding: "base64", Size: 780,
		Extended: &imap.BodyStructureSinglePartExt{Disposition: &imap.BodyStructureDisposition{Value: "attachment",
			Params: map[string]string{"filename": "résultats.pdf"}}}}
	note := &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Encoding: "7bit", Size: 12,
		Params: map[string]string{"name*": "UTF-8''note%20m%C3%A9dicale.txt"}}
	bs := &imap.BodyStructureMultiPart{Subtype: "mixed", Children: []imap.BodyStructure{
		&imap.BodyStructureMultiPart{Subtype: "alternative", Children: []imap.BodyStructure{text("plain"), text("html")}},
		pdf, note,
	}}
	plain, html, atts := parts(bs)
	if plain == nil || !slices.Equal(plain.part, []int{1, 1}) || html == nil || !slices.Equal(html.part, []int{1, 2}) || plain.single {
		t.Fatalf("text parts %+v %+v", plain, html)
	}
	if len(atts) != 2 || atts[0].Name != "résultats.pdf" || atts[0].Size != 570 || !slices.Equal(atts[0].Part, []int{2}) ||
		atts[1].Name != "note médicale.txt" || atts[1].Type != "text/plain" || !slices.Equal(atts[1].Part, []int{3}) {
		t.Fatalf("attachments %+v", atts)
	}

	// A single-part message whose only part is a PDF: no text, one attachment fetched as the message's text.
	single := &imap.BodyStructureSinglePart{Type: "application", Subtype: "pdf", Encoding: "base64", Size: 78}
	plain, html, atts = parts(single)
	if plain != nil || html != nil || len(atts) != 1 || !atts[0].single || atts[0].Name != "attachment-1.pdf" {
		t.Fatalf("single part: %+v %+v %+v", plain, html, atts)
	}
}
