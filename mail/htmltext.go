package mail

import (
	"io"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxHTMLDepth bounds the nesting HTMLText follows for skipped elements, whatever the document does.
const maxHTMLDepth = 1 << 16

// HTMLText returns the text a reader sees in an HTML mail, for showing it as plain text. It reads the document with
// the HTML tokenizer of golang.org/x/net/html and keeps text only: no markup, nothing of script, style, head,
// title, template, object or svg elements; block elements and <br> become line breaks, list items start with "• ",
// table cells are separated by two spaces, <pre> keeps its spaces, images show as their alt text in brackets, and a
// link is followed by its address in angle brackets when that address (http, https or mailto) differs from its
// text. Nothing is ever fetched: images, style sheets, frames and links stay words on the screen. The result goes
// through CleanText. It never panics, whatever r holds.
func HTMLText(r io.Reader) string {
	z := html.NewTokenizer(r)
	var b textBuilder
	skip := 0 // depth inside elements whose content is not shown
	pre := 0  // depth inside <pre>
	// open is the <a> element being read. An <a> start tag closes the one before, as in HTML's own parsing rules
	// (links do not nest): text goes to one link at most, so the work stays linear in the document's size.
	var open *link
	closeLink := func() {
		l := open
		open = nil
		if l == nil {
			return
		}
		text := strings.TrimSpace(l.text.String())
		if shownAddress(l.href) && text != strings.TrimPrefix(l.href, "mailto:") && text != l.href {
			b.space = true
			b.words("<" + l.href + ">")
		}
	}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return CleanText(b.String())
		case html.TextToken:
			if skip > 0 {
				continue
			}
			t := string(z.Text())
			if pre > 0 {
				b.raw(t)
			} else {
				b.words(t)
			}
			if open != nil {
				open.text.WriteString(t)
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			end := tt == html.EndTagToken
			if skipped[a] {
				if tt == html.StartTagToken && skip < maxHTMLDepth {
					skip++
				} else if end && skip > 0 {
					skip--
				}
				continue
			}
			if skip > 0 {
				continue
			}
			attrs := map[string]string{}
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				attrs[string(k)] = string(v)
			}
			switch {
			case a == atom.Br || a == atom.Hr:
				b.newline()
			case a == atom.Img && !end:
				if alt := strings.TrimSpace(attrs["alt"]); alt != "" {
					b.words("[" + alt + "]")
				}
			case a == atom.Li && !end:
				b.breakLines(1)
				b.raw("• ")
			case a == atom.Td || a == atom.Th:
				if !end && b.newlines == 0 && b.sb.Len() > 0 {
					b.raw("  ")
				}
			case a == atom.Pre:
				b.breakLines(2)
				if end && pre > 0 {
					pre--
				} else if !end && tt != html.SelfClosingTagToken {
					pre++
				}
			case a == atom.A && !end && tt != html.SelfClosingTagToken:
				closeLink()
				open = &link{href: strings.TrimSpace(attrs["href"])}
			case a == atom.A && end:
				closeLink()
			case block[a] > 0:
				b.breakLines(block[a])
			}
		}
	}
}

// link is an <a> element being read.
type link struct {
	href string
	text strings.Builder
}

// shownAddress reports whether a link address is worth showing (an address a person can check), not a script.
func shownAddress(href string) bool {
	h := strings.ToLower(href)
	return strings.HasPrefix(h, "http://") || strings.HasPrefix(h, "https://") || strings.HasPrefix(h, "mailto:")
}

// skipped elements have no content a reader sees.
var skipped = map[atom.Atom]bool{atom.Script: true, atom.Style: true, atom.Head: true, atom.Title: true,
	atom.Template: true, atom.Object: true, atom.Svg: true, atom.Iframe: true, atom.Noembed: true, atom.Math: true}

// block elements start and end a line (1) or a paragraph, with an empty line around it (2).
var block = map[atom.Atom]int{atom.Div: 1, atom.Tr: 1, atom.Dt: 1, atom.Dd: 1, atom.Section: 1, atom.Article: 1,
	atom.Header: 1, atom.Footer: 1, atom.Address: 1, atom.Center: 1, atom.Caption: 1, atom.Figcaption: 1,
	atom.Form: 1, atom.Fieldset: 1, atom.Body: 1, atom.P: 2, atom.Table: 2, atom.Ul: 2, atom.Ol: 2, atom.Dl: 2,
	atom.Blockquote: 2, atom.H1: 2, atom.H2: 2, atom.H3: 2, atom.H4: 2, atom.H5: 2, atom.H6: 2}

// textBuilder joins words with single spaces and lines with at most one empty line between them.
type textBuilder struct {
	sb       strings.Builder
	newlines int  // line breaks at the end of what was written
	space    bool // a space is pending before the next word
}

func (t *textBuilder) String() string { return strings.TrimSpace(t.sb.String()) + "\n" }

// words writes text with its runs of HTML white space collapsed to one space (a no-break space stays).
func (t *textBuilder) words(s string) {
	for i, w := range strings.FieldsFunc(s, isHTMLSpace) {
		if (i > 0 || t.space || startsWithSpace(s)) && t.newlines == 0 && t.sb.Len() > 0 {
			t.sb.WriteByte(' ')
		}
		t.sb.WriteString(w)
		t.newlines, t.space = 0, false
	}
	if endsWithSpace(s) {
		t.space = true
	}
}

// raw writes s as it is (inside <pre>, or a marker).
func (t *textBuilder) raw(s string) {
	if s == "" {
		return
	}
	if t.space && t.newlines == 0 && t.sb.Len() > 0 {
		t.sb.WriteByte(' ')
	}
	t.sb.WriteString(s)
	t.space = false
	t.newlines = 0
	if n := len(s) - len(strings.TrimRight(s, "\n")); n > 0 {
		t.newlines = n
	}
}

// breakLines ends the current line (n = 1) or paragraph (n = 2) unless it is already ended.
func (t *textBuilder) breakLines(n int) {
	for t.newlines < n && t.sb.Len() > 0 {
		t.newline()
	}
	t.space = false
}

// newline ends the current line; two in a row leave one empty line, more are not written.
func (t *textBuilder) newline() {
	t.space = false
	if t.sb.Len() == 0 || t.newlines >= 2 {
		return
	}
	t.sb.WriteByte('\n')
	t.newlines++
}

// isHTMLSpace: the white space of HTML (space, tab, LF, FF, CR), which excludes the no-break space.
func isHTMLSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\f' || r == '\r' }

func startsWithSpace(s string) bool { return s != "" && isHTMLSpace(rune(s[0])) }
func endsWithSpace(s string) bool   { return s != "" && isHTMLSpace(rune(s[len(s)-1])) }
