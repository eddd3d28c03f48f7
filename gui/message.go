package gui

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// Time limits of the message view's background work: opening one message, saving one attachment (a large file on a
// slow line; the person can stop it).
const (
	messageTimeout    = 60 * time.Second
	attachmentTimeout = 30 * time.Minute
)

// messageView is the folder browser's reading pane: the open message's headers, its text (HTML mail shown as text,
// nothing fetched from the Internet), and its attachments with their size and a Save button. Everything goes
// through the account's mail service, so through the same card session as the folders. UI goroutine only.
type messageView struct {
	win  fyne.Window
	lang words.Lang
	svc  MailService
	prof *profile.Profile

	msg      *mail.Message // the message shown, nil for none
	box      *fyne.Container
	empty    *widget.Label // shown instead of a message: a hint, progress, or why nothing is shown
	head     *widget.Form
	subject  *widget.Label
	notes    *widget.Label // HTML shown as text, text cut
	body     *widget.Label
	attTitle *widget.Label
	atts     *fyne.Container
	status   *widget.Label // the outcome of a save
	scroll   *container.Scroll

	load   *job // loading the message
	attach *job // saving one attachment
}

func newMessageView(w fyne.Window, lang words.Lang, svc MailService, p *profile.Profile, l *life) *messageView {
	v := &messageView{win: w, lang: lang, svc: svc, prof: p}
	v.empty = wrapped(v.t("message.placeholder", nil))
	v.empty.Importance = widget.LowImportance
	v.subject = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.subject.Wrapping = fyne.TextWrapWord
	v.subject.Selectable = true
	v.head = widget.NewForm()
	v.notes = wrapped("")
	v.notes.Importance = widget.LowImportance
	v.body = wrapped("")
	v.body.Selectable = true
	v.attTitle = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.atts = container.NewVBox()
	v.status = wrapped("")
	v.status.Hide()
	v.box = container.NewVBox()
	v.scroll = container.NewVScroll(v.box)
	v.load = &job{life: l, timeout: messageTimeout}
	v.attach = &job{life: l, timeout: attachmentTimeout, onBusy: func(bool) { v.showAttachments() }}
	v.clear("")
	return v
}

func (v *messageView) t(key string, data map[string]any) string { return words.T(v.lang, key, data) }

// content is the pane.
func (v *messageView) content() fyne.CanvasObject { return v.scroll }

// clear takes the message off the screen and shows why (the hint to pick a message when why is ""). Nothing of the
// message stays in memory.
func (v *messageView) clear(why string) {
	v.msg = nil
	if why == "" {
		why = v.t("message.placeholder", nil)
	}
	v.empty.SetText(why)
	v.subject.SetText("")
	v.head.Items = nil
	v.head.Refresh()
	v.body.SetText("")
	v.notes.SetText("")
	v.atts.Objects = nil
	v.status.Hide()
	v.box.Objects = []fyne.CanvasObject{v.empty}
	v.box.Refresh()
	v.scroll.ScrollToTop()
}

// drop stops the running loads and saves (their results are dropped).
func (v *messageView) drop() {
	v.load.drop()
	v.attach.drop()
}

// open loads the message ref in the background (a newer open replaces it) and shows it.
func (v *messageView) open(ref mail.MessageRef) {
	if v.msg != nil && v.msg.Ref == ref {
		return
	}
	v.attach.drop()
	v.clear(v.t("message.opening", nil))
	svc, p := v.svc, v.prof
	v.load.start(func(ctx context.Context, r run) {
		m, err := svc.Message(ctx, p, ref)
		r.end(func() {
			if err != nil {
				v.clear(v.failure(err))
				return
			}
			v.show(m)
		})
	})
}

// failure is a failed load or save in words: the message gone from its folder, or the code's message and remedy.
func (v *messageView) failure(err error) string {
	if errors.Is(err, mail.ErrMessageGone) {
		return v.t("message.gone", nil)
	}
	message, remedy := explainError(v.lang, err)
	return message + " " + remedy
}

// show puts m on the screen.
func (v *messageView) show(m *mail.Message) {
	v.msg = m
	v.subject.SetText(m.Subject)
	v.head.Items = nil
	v.head.Append(v.t("folders.col_from", nil), wrapLabel(m.From))
	if len(m.To) > 0 {
		v.head.Append(v.t("message.to", nil), wrapLabel(strings.Join(m.To, ", ")))
	}
	if len(m.Cc) > 0 {
		v.head.Append(v.t("message.cc", nil), wrapLabel(strings.Join(m.Cc, ", ")))
	}
	if !m.Date.IsZero() {
		v.head.Append(v.t("folders.col_date", nil), wrapLabel(m.Date.Local().Format("2006-01-02 15:04")))
	}
	var notes []string
	if m.FromHTML {
		notes = append(notes, v.t("message.from_html", nil))
	}
	if m.Truncated {
		notes = append(notes, v.t("message.truncated", nil))
	}
	v.notes.SetText(strings.Join(notes, "\n"))
	text := m.Text
	if strings.TrimSpace(text) == "" {
		text = v.t("message.no_text", nil)
	}
	v.body.SetText(text)
	v.status.Hide()
	v.box.Objects = []fyne.CanvasObject{v.subject, v.head}
	if len(notes) > 0 {
		v.box.Objects = append(v.box.Objects, v.notes)
	}
	v.box.Objects = append(v.box.Objects, widget.NewSeparator(), v.body)
	if len(m.Attachments) > 0 {
		v.box.Objects = append(v.box.Objects, widget.NewSeparator(), v.attTitle, v.atts)
	}
	v.box.Objects = append(v.box.Objects, v.status)
	v.showAttachments()
	v.box.Refresh()
	v.scroll.ScrollToTop()
}

// showAttachments lists the attachments with their size and a Save button (disabled while a save runs).
func (v *messageView) showAttachments() {
	if v.msg == nil {
		return
	}
	v.attTitle.SetText(v.t("message.attachments", map[string]any{"N": len(v.msg.Attachments)}))
	busy := v.attach.busy()
	rows := make([]fyne.CanvasObject, 0, len(v.msg.Attachments))
	for _, a := range v.msg.Attachments {
		save := widget.NewButtonWithIcon(v.t("message.save", nil), theme.DocumentSaveIcon(), func() { v.chooseFile(a) })
		if busy {
			save.Disable()
		}
		name := widget.NewLabel(a.Name + " — " + sizeText(v.lang, a.Size))
		name.Truncation = fyne.TextTruncateEllipsis
		rows = append(rows, container.NewBorder(nil, nil, widget.NewIcon(theme.FileIcon()), save, name))
	}
	if busy {
		stop := widget.NewButtonWithIcon(v.t("wizard.stop", nil), theme.CancelIcon(), func() { v.attach.stop() })
		rows = append(rows, container.NewBorder(nil, nil, nil, stop, widget.NewProgressBarInfinite()))
	}
	v.atts.Objects = rows
	v.atts.Refresh()
}

// chooseFile asks where to save attachment a, then saves it in the background.
func (v *messageView) chooseFile(a mail.Attachment) {
	msg := v.msg
	d := dialog.NewFileSave(func(wc fyne.URIWriteCloser, err error) {
		switch {
		case err != nil:
			v.setStatus(v.t("message.save_failed", map[string]any{"Name": a.Name})+" "+err.Error(), true)
		case wc != nil && v.msg == msg:
			v.saveTo(wc, a)
		case wc != nil: // the message left the screen meanwhile (card removed, another message)
			_ = wc.Close()
		}
	}, v.win)
	d.SetFileName(a.Name)
	d.Show()
}

// saveTo writes attachment a of the message shown to wc in the background, atomically for a local file.
func (v *messageView) saveTo(wc fyne.URIWriteCloser, a mail.Attachment) {
	svc, p, ref, u := v.svc, v.prof, v.msg.Ref, wc.URI()
	v.setStatus(v.t("message.saving", map[string]any{"Name": a.Name}), false)
	v.attach.start(func(ctx context.Context, r run) {
		err := writeURI(wc, "attachment", func(w io.Writer) error {
			_, err := svc.Attachment(ctx, p, ref, a.Part, w)
			return err
		})
		r.end(func() {
			switch {
			case errors.Is(err, context.Canceled):
				v.setStatus(v.t("message.save_stopped", map[string]any{"Name": a.Name}), true)
			case err != nil:
				v.setStatus(v.t("message.save_failed", map[string]any{"Name": a.Name})+" "+v.failure(err), true)
			default:
				v.setStatus(v.t("message.saved", map[string]any{"Path": u.Path()}), false)
			}
		})
	})
}

func (v *messageView) setStatus(text string, bad bool) {
	v.status.Importance = widget.SuccessImportance
	if bad {
		v.status.Importance = widget.DangerImportance
	}
	v.status.SetText(text)
	v.status.Show()
}

// sizeText is a size in bytes in words: "980 bytes", "12 KB", "1.4 MB" ("1,4 Mo" in French).
func sizeText(lang words.Lang, n int64) string {
	num := func(x float64) string {
		s := strconv.FormatFloat(x, 'f', 1, 64)
		s = strings.TrimSuffix(s, ".0")
		if lang == words.French {
			s = strings.ReplaceAll(s, ".", ",")
		}
		return s
	}
	switch {
	case n < 1000:
		return words.T(lang, "size.bytes", map[string]any{"N": n})
	case n < 1000*1000:
		return words.T(lang, "size.kb", map[string]any{"N": num(float64(n) / 1000)})
	}
	return words.T(lang, "size.mb", map[string]any{"N": num(float64(n) / 1e6)})
}
