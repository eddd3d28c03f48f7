package mail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/html/charset"
)

// MaxTextSize caps the text part that Message fetches, in encoded bytes: a longer text is cut there and
// Message.Truncated is set.
const MaxTextSize = 1 << 20

// ErrMessageGone: the message is no longer in its folder (deleted or moved since the headers were listed, or the
// folder's UIDVALIDITY changed so that its UID may name another message).
var ErrMessageGone = errors.New("message no longer in its folder")

// MessageRef names one message: its folder, and its UID within the folder's UIDVALIDITY epoch (RFC 9051 §2.3.1.1).
// Header.Ref makes one.
type MessageRef struct {
	Folder      string
	UIDValidity uint32 // 0: not checked
	UID         uint32
}

// Message is one message as a reader sees it: the envelope, the text, and the list of attachments (their contents
// are fetched by Attachment, one at a time). Its fields hold the person's mail: never log or report them.
type Message struct {
	Ref     MessageRef
	Date    time.Time // the envelope date, or the internal date when the message has none
	From    string    // "Name <address>" or the bare address
	To, Cc  []string
	Subject string
	Size    uint32 // RFC822.SIZE
	// Text is the text body for display: the first text/plain part that is not an attachment, else the first
	// text/html part turned into text by HTMLText (FromHTML is then set). Control characters other than newline and
	// tab, and bidirectional overrides, are removed, and so are the line ends at the end. "" when the message has no
	// text part.
	Text     string
	FromHTML bool
	// Truncated: the text part is longer than MaxTextSize and Text is its beginning.
	Truncated   bool
	Attachments []Attachment
}

// Attachment is one part of a message that is not its text: a file, an image, a forwarded message, a signature.
type Attachment struct {
	// Part is the IMAP part number (RFC 9051 §6.4.5): [2], [1 3]…; [1] for the body of a single-part message.
	Part []int
	// Name is a file name safe to offer in a save dialog: the sender's name without any directory, control
	// character or character Windows refuses, or "attachment-N.ext" when the sender gave none.
	Name string
	// Type is the media type in lower case ("application/pdf").
	Type string
	// Size is the decoded size in bytes, estimated from the encoded size (within a few bytes per line for base64).
	Size int64

	encoding string
	single   bool // the message's only part: fetched as BODY[HEADER] and BODY[TEXT]
}

// Ref returns the reference of the message with header h in folder.
func (h Header) Ref(folder string) MessageRef {
	return MessageRef{Folder: folder, UIDValidity: h.UIDValidity, UID: h.UID}
}

// Message opens ref's folder read-only (EXAMINE: nothing is marked as read) and fetches the message's envelope,
// structure and text part. Errors: ErrMessageGone (wrapped in *StepError) when the message is not there any more,
// else as Headers.
func (c *IMAPConn) Message(ctx context.Context, ref MessageRef) (*Message, error) {
	var m *Message
	err := c.op(ctx, StepFetch, func() error {
		fm, err := c.structure(ref, true)
		if err != nil {
			return err
		}
		m = messageOf(ref, fm)
		text, html, atts := parts(fm.BodyStructure)
		m.Attachments = atts
		chosen := text
		if chosen == nil {
			chosen, m.FromHTML = html, html != nil
		}
		if chosen == nil {
			return nil
		}
		body, truncated, err := c.fetchText(ref, chosen)
		if err != nil {
			return err
		}
		if m.FromHTML {
			m.Text = HTMLText(strings.NewReader(body))
		} else {
			m.Text = CleanText(body)
		}
		m.Text = strings.TrimRight(m.Text, " \t\n")
		m.Truncated = truncated
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Attachment writes the decoded contents of the attachment with IMAP part number part of ref's message to w, and
// returns the number of bytes written. The part is looked up again in the message's structure (it must be an
// attachment, as Message lists them). The step timeout of the transfer grows with the message's size (one second
// per 32 KiB on top of Dialer.Timeout); ctx bounds it too. Errors: ErrMessageGone, ErrNoSuchPart (wrapped in
// *StepError), w's error, or as Headers.
func (c *IMAPConn) Attachment(ctx context.Context, ref MessageRef, part []int, w io.Writer) (int64, error) {
	var size int64
	err := c.op(ctx, StepFetch, func() error {
		fm, err := c.structure(ref, false)
		if err == nil {
			size = fm.RFC822Size
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	var written int64
	err = c.opFor(ctx, StepFetch, c.cn.d.timeout()+time.Duration(size/(32<<10))*time.Second, func() error {
		fm, err := c.structure(ref, false) // again: another operation may have selected another folder meanwhile
		if err != nil {
			return err
		}
		_, _, atts := parts(fm.BodyStructure)
		i := slices.IndexFunc(atts, func(a Attachment) bool { return slices.Equal(a.Part, part) })
		if i < 0 {
			return fmt.Errorf("part %v: %w", part, ErrNoSuchPart)
		}
		written, err = c.stream(ref, atts[i], w)
		return err
	})
	return written, err
}

// stream fetches attachment a of ref's message and copies it, decoded, to w.
func (c *IMAPConn) stream(ref MessageRef, a Attachment, w io.Writer) (int64, error) {
	_, body := sections(a.single, a.Part, nil)
	cmd := c.c.Fetch(imap.UIDSetNum(imap.UID(ref.UID)), &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{body}})
	var written int64
	var err error
	found := false
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			data, ok := item.(imapclient.FetchItemDataBodySection)
			if !ok || data.Literal == nil {
				continue
			}
			if !found && err == nil {
				found = true
				hdr := message.Header{}
				hdr.Set("Content-Transfer-Encoding", a.encoding)
				var e *message.Entity
				if e, err = message.New(hdr, data.Literal); err == nil {
					written, err = io.Copy(w, e.Body)
				}
			}
			_, _ = io.Copy(io.Discard, data.Literal) // the rest, so that the connection stays in step
		}
	}
	if cerr := cmd.Close(); cerr != nil && err == nil {
		err = protoErr(StepFetch, cerr)
	}
	if err == nil && !found {
		err = fmt.Errorf("uid %d: %w", ref.UID, ErrMessageGone)
	}
	if err != nil {
		return written, fmt.Errorf("part %v: %w", a.Part, err)
	}
	return written, nil
}

// ErrNoSuchPart: the message has no attachment with that part number.
var ErrNoSuchPart = errors.New("no such attachment in the message")

// structure examines ref's folder and fetches the message's structure (and, with envelope, what a reader sees of
// it). UIDVALIDITY must match when ref has one.
func (c *IMAPConn) structure(ref MessageRef, envelope bool) (*imapclient.FetchMessageBuffer, error) {
	sd, err := c.c.Select(ref.Folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, protoErr(StepSelect, err)
	}
	if ref.UIDValidity != 0 && sd.UIDValidity != ref.UIDValidity {
		return nil, fmt.Errorf("uidvalidity %d, now %d: %w", ref.UIDValidity, sd.UIDValidity, ErrMessageGone)
	}
	opts := &imap.FetchOptions{UID: true, RFC822Size: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}
	if envelope {
		opts.Envelope, opts.InternalDate = true, true
	}
	msgs, err := c.c.Fetch(imap.UIDSetNum(imap.UID(ref.UID)), opts).Collect()
	if err != nil {
		return nil, protoErr(StepFetch, err)
	}
	if len(msgs) == 0 || msgs[0].BodyStructure == nil {
		return nil, fmt.Errorf("uid %d: %w", ref.UID, ErrMessageGone)
	}
	return msgs[0], nil
}

func messageOf(ref MessageRef, fm *imapclient.FetchMessageBuffer) *Message {
	h := headerOf(fm)
	m := &Message{Ref: ref, Date: h.Date, From: CleanText(h.From),
		Subject: CleanText(h.Subject), Size: h.Size}
	if e := fm.Envelope; e != nil {
		for _, a := range e.To {
			m.To = append(m.To, formatAddress(a))
		}
		for _, a := range e.Cc {
			m.Cc = append(m.Cc, formatAddress(a))
		}
	}
	return m
}

// textPart is the text part Message shows.
type textPart struct {
	part   []int
	single bool
	size   uint32
}

// parts splits a message's structure into its text/plain part, its text/html part and its attachments, in the
// order of the structure. A part is an attachment when its disposition says so, when it has a file name, when it is
// not text, or when it is a second text part of the same type.
func parts(bs imap.BodyStructure) (text, html *textPart, atts []Attachment) {
	_, single := bs.(*imap.BodyStructureSinglePart)
	bs.Walk(func(p []int, b imap.BodyStructure) bool {
		sp, ok := b.(*imap.BodyStructureSinglePart)
		if !ok {
			return true // a multipart: look inside
		}
		mt := sp.MediaType()
		disp := ""
		if d := sp.Disposition(); d != nil {
			disp = strings.ToLower(d.Value)
		}
		inline := disp != "attachment" && fileName(sp) == ""
		switch {
		case inline && mt == "text/plain" && text == nil:
			text = &textPart{part: append([]int(nil), p...), single: single, size: sp.Size}
			return true
		case inline && mt == "text/html" && html == nil:
			html = &textPart{part: append([]int(nil), p...), single: single, size: sp.Size}
			return true
		}
		atts = append(atts, Attachment{Part: append([]int(nil), p...), Name: SafeFileName(fileName(sp), len(atts), mt),
			Type: mt, Size: decodedSize(sp.Size, sp.Encoding), encoding: strings.ToLower(sp.Encoding), single: single})
		return true
	})
	return text, html, atts
}

// fileName is a part's file name as the sender gave it (Content-Disposition filename, else Content-Type name), with
// RFC 2231 encoding undone.
func fileName(sp *imap.BodyStructureSinglePart) string {
	var params []map[string]string
	if sp.Extended != nil && sp.Extended.Disposition != nil {
		params = append(params, sp.Extended.Disposition.Params)
	}
	params = append(params, sp.Params)
	for _, ps := range params {
		for _, k := range []string{"filename", "name"} {
			if v := ps[k]; v != "" {
				return v
			}
			if v := ps[k+"*"]; v != "" {
				if _, decoded, err := mime.ParseMediaType("x/x; " + k + "*=" + v); err == nil && decoded[k] != "" {
					return decoded[k]
				}
				return v
			}
		}
	}
	return ""
}

// decodedSize estimates the decoded size of a part of size encoded bytes: base64 carries 57 bytes per 78-byte line
// (76 characters and CRLF, RFC 2045 §6.8); other encodings are counted as they are.
func decodedSize(size uint32, encoding string) int64 {
	if strings.EqualFold(encoding, "base64") {
		return int64(size) * 57 / 78
	}
	return int64(size)
}

// sections returns the FETCH sections of a part's MIME header and of its body (peeked: nothing is marked as read),
// the body cut to partial when it is not nil. The only part of a single-part message is the message's header and
// text.
func sections(single bool, part []int, partial *imap.SectionPartial) (header, body *imap.FetchItemBodySection) {
	if single {
		return &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true},
			&imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true, Partial: partial}
	}
	return &imap.FetchItemBodySection{Specifier: imap.PartSpecifierMIME, Part: part, Peek: true},
		&imap.FetchItemBodySection{Part: part, Peek: true, Partial: partial}
}

// fetchText fetches a text part (at most MaxTextSize encoded bytes) and decodes its transfer encoding and charset.
func (c *IMAPConn) fetchText(ref MessageRef, t *textPart) (string, bool, error) {
	hs, bs := sections(t.single, t.part, &imap.SectionPartial{Offset: 0, Size: MaxTextSize})
	msgs, err := c.c.Fetch(imap.UIDSetNum(imap.UID(ref.UID)), &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{hs, bs}}).Collect()
	if err != nil {
		return "", false, protoErr(StepFetch, err)
	}
	if len(msgs) == 0 {
		return "", false, fmt.Errorf("uid %d: %w", ref.UID, ErrMessageGone)
	}
	text, err := DecodeText(msgs[0].FindBodySection(hs), msgs[0].FindBodySection(bs))
	return text, t.size > MaxTextSize, err
}

// DecodeText decodes the body of a text part whose MIME header is header: transfer encoding (base64,
// quoted-printable) and charset (any WHATWG label: UTF-8, ISO-8859-x, windows-125x…) to UTF-8. A body cut in the
// middle of its encoding gives what could be decoded; an unknown encoding or charset gives the body as it is. The
// error is for a header that cannot be parsed.
func DecodeText(header, body []byte) (string, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(header)))
	if err != nil && len(header) > 0 {
		return "", fmt.Errorf("part header: %w", err)
	}
	mh := message.Header{Header: h}
	e, err := message.New(mh, bytes.NewReader(body))
	var r io.Reader = bytes.NewReader(body)
	if e != nil {
		r = e.Body
	}
	if err != nil && message.IsUnknownCharset(err) {
		// go-message knows UTF-8 and US-ASCII only; the WHATWG decoders do the rest.
		if _, params, perr := mh.ContentType(); perr == nil && params["charset"] != "" {
			if cr, cerr := charset.NewReaderLabel(params["charset"], r); cerr == nil {
				r = cr
			}
		}
	}
	data, _ := io.ReadAll(r) // a cut body ends with a decoding error: keep what came before it
	if !utf8.Valid(data) {
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	return string(data), nil
}

// CleanText makes text safe to show: line ends become "\n", and control characters other than newline and tab,
// bidirectional overrides and isolates (which can make a text read differently from what it is) and other format
// characters are removed.
func CleanText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r':
			return '\n'
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r) && r != '\u200d': // keep ZWJ (emoji sequences)
			return -1
		}
		return r
	}, s)
}

// SafeFileName turns a file name sent by someone else into one safe to offer in a save dialog: the last path
// component only (either separator), no control or format character, no character Windows refuses (replaced with
// '_'), no leading dot or dash, at most 120 bytes (the extension kept). When nothing usable is left it returns
// "attachment-<n+1>" with an extension for mediaType when one is known.
func SafeFileName(name string, n int, mediaType string) string {
	name = strings.ReplaceAll(name, `\`, "/")
	if name = path.Base("/" + name); name == "/" {
		name = ""
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return -1
		case strings.ContainsRune(`<>:"/|?*`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".-")
	name = strings.TrimRight(name, ". ")
	if len(name) > 120 {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		cut := 120 - len(ext)
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + ext
	}
	if base, _, _ := strings.Cut(strings.ToUpper(name), "."); windowsDevice(strings.TrimRight(base, " ")) {
		name = "_" + name
	}
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n+1)
		if exts, _ := mime.ExtensionsByType(mediaType); len(exts) > 0 {
			name += exts[0]
		} else if mediaType == "message/rfc822" {
			name += ".eml"
		}
	}
	return name
}

// windowsDevice reports whether name (upper case, without extension) is a device Windows opens instead of a file.
func windowsDevice(name string) bool {
	switch name {
	case "CON", "PRN", "AUX", "NUL":
		return true
	}
	return len(name) == 4 && (strings.HasPrefix(name, "COM") || strings.HasPrefix(name, "LPT")) &&
		name[3] >= '0' && name[3] <= '9'
}
