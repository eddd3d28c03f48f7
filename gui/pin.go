package gui

import (
	"context"
	"fmt"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// PINPrompter asks for card PINs with a dialog in a window. Its Prompt method is a session.PINPrompt: it may be
// called from any goroutine, shows the dialog through fyne.Do, and waits for the person or for ctx.
//
// With App set, each prompt opens a small window of its own, centred and focused, because the login may be caused by
// any window (main window, folder browser, wizard) and a dialog inside another window could stay hidden behind it.
// Without App, the dialog opens over Window.
type PINPrompter struct {
	App    fyne.App
	Window fyne.Window
	Lang   words.Lang
}

type pinResult struct {
	pin []byte
	err error
}

// Prompt shows the PIN dialog for req and returns the PIN typed (the caller zeroes it after the login), nil for a
// PIN-pad reader once the person confirmed, or an error wrapping session.ErrPINCancelled.
func (p *PINPrompter) Prompt(ctx context.Context, req session.PINRequest) ([]byte, error) {
	done := make(chan pinResult, 1)
	var d *pinDialog
	fyne.Do(func() {
		parent := p.Window
		var own fyne.Window
		ownClosed := false
		if p.App != nil {
			own = p.App.NewWindow(words.T(p.Lang, "pin.title", nil))
			own.Resize(pinWindowSize)
			own.CenterOnScreen()
			own.Show()
			own.RequestFocus()
			parent = own
		}
		d = showPINDialog(parent, p.Lang, req, func(r pinResult) {
			if own != nil && !ownClosed {
				ownClosed = true
				own.Close()
			}
			done <- r
		})
		if own != nil {
			own.SetOnClosed(func() { // closing the window is cancelling
				ownClosed = true
				d.cancel()
			})
		}
	})
	select {
	case r := <-done:
		return r.pin, r.err
	case <-ctx.Done():
		fyne.Do(func() {
			if d != nil {
				d.cancel()
			}
		})
		return nil, fmt.Errorf("%w: %w", session.ErrPINCancelled, ctx.Err())
	}
}

// pinDialog is one PIN request on screen. UI goroutine only.
type pinDialog struct {
	dlg      *dialog.CustomDialog
	entry    *pinEntry
	confirm  *widget.Check // shown on the final try: the person must acknowledge the risk
	ok       *widget.Button
	finished bool
	reply    func(pinResult)
}

// pinEntry is a password entry that submits on Enter and cancels on Escape.
type pinEntry struct {
	widget.Entry
	onEscape func()
}

func newPINEntry() *pinEntry {
	e := &pinEntry{}
	e.Password = true
	e.ExtendBaseWidget(e)
	return e
}

// TypedKey handles Escape; other keys go to the entry.
func (e *pinEntry) TypedKey(k *fyne.KeyEvent) {
	if k.Name == fyne.KeyEscape && e.onEscape != nil {
		e.onEscape()
		return
	}
	e.Entry.TypedKey(k)
}

func showPINDialog(w fyne.Window, lang words.Lang, req session.PINRequest, reply func(pinResult)) *pinDialog {
	t := func(k string, data map[string]any) string { return words.T(lang, k, data) }
	d := &pinDialog{reply: reply}
	// Real reader names reach 80 bytes: the prompt wraps, and the token label is cut with an ellipsis.
	prompt := widget.NewLabel(t("pin.prompt", map[string]any{"Reader": req.Reader}))
	prompt.Wrapping = fyne.TextWrapWord
	rows := []fyne.CanvasObject{prompt}
	if req.TokenLabel != "" {
		token := widget.NewLabelWithStyle(req.TokenLabel, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
		token.Truncation = fyne.TextTruncateEllipsis
		rows = append(rows, token)
	}
	if req.TriesLeft >= 0 {
		rows = append(rows, widget.NewLabel(t("pin.tries_left", map[string]any{"Tries": req.TriesLeft})))
	}
	if (req.CountLow || req.Refused) && !req.FinalTry {
		warn := widget.NewLabel(t("pin.count_low", nil))
		warn.Importance = widget.WarningImportance
		rows = append(rows, warn)
	}
	d.ok = widget.NewButtonWithIcon(t("pin.ok", nil), theme.ConfirmIcon(), d.submit)
	d.ok.Importance = widget.HighImportance
	cancel := widget.NewButtonWithIcon(t("pin.cancel", nil), theme.CancelIcon(), d.cancel)
	if req.PINPad {
		rows = append(rows, widget.NewLabel(t("pin.pinpad", nil)))
	} else {
		d.entry = newPINEntry()
		d.entry.SetPlaceHolder(t("pin.placeholder", nil))
		d.entry.OnSubmitted = func(string) { d.submit() }
		d.entry.onEscape = d.cancel
		d.entry.OnChanged = func(string) { d.updateOK() }
		rows = append(rows, d.entry)
	}
	if req.FinalTry {
		warn := widget.NewLabel(t("pin.final_try", nil))
		warn.Importance = widget.DangerImportance
		warn.Wrapping = fyne.TextWrapWord
		d.confirm = widget.NewCheck(t("pin.final_try_confirm", nil), func(bool) { d.updateOK() })
		rows = append(rows, warn, d.confirm)
	}
	d.dlg = dialog.NewCustomWithoutButtons(t("pin.title", nil), container.NewVBox(rows...), w)
	d.dlg.SetButtons([]fyne.CanvasObject{cancel, d.ok})
	d.dlg.SetOnClosed(d.cancel) // closed by any other means counts as cancel
	d.updateOK()
	d.dlg.Resize(fyne.NewSize(420, d.dlg.MinSize().Height))
	d.dlg.Show()
	if d.entry != nil {
		w.Canvas().Focus(d.entry)
	}
	return d
}

// updateOK enables OK only with a PIN typed (or a PIN pad) and, on the final try, the risk acknowledged.
func (d *pinDialog) updateOK() {
	ready := (d.entry == nil || d.entry.Text != "") && (d.confirm == nil || d.confirm.Checked)
	if ready {
		d.ok.Enable()
	} else {
		d.ok.Disable()
	}
}

func (d *pinDialog) submit() {
	if d.finished || d.ok.Disabled() {
		return
	}
	d.finished = true
	var pin []byte
	if d.entry != nil {
		pin = []byte(d.entry.Text)
		d.entry.SetText("") // the string copy cannot be zeroed; drop the widget's reference to it at once
	}
	d.dlg.Hide()
	d.reply(pinResult{pin: pin})
}

func (d *pinDialog) cancel() {
	if d.finished {
		return
	}
	d.finished = true
	if d.entry != nil {
		d.entry.SetText("")
	}
	d.dlg.Hide()
	d.reply(pinResult{err: session.ErrPINCancelled})
}
