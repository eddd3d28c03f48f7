package gui

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

func newPINTest(t *testing.T, req session.PINRequest) (*pinDialog, fyne.Window, *[]pinResult) {
	t.Helper()
	a := test.NewTempApp(t)
	w := a.NewWindow("t")
	w.Resize(fyne.NewSize(600, 400))
	var got []pinResult
	d := showPINDialog(w, words.English, req, func(r pinResult) { got = append(got, r) })
	return d, w, &got
}

func TestPINDialogEnterSubmits(t *testing.T) {
	d, w, got := newPINTest(t, session.PINRequest{Reader: "Reader 0", TokenLabel: "Dr Alice", TriesLeft: -1})
	if !d.ok.Disabled() {
		t.Error("OK enabled with no PIN typed")
	}
	test.Type(d.entry, "1234")
	if d.ok.Disabled() {
		t.Error("OK disabled with a PIN typed")
	}
	d.entry.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn}) // Enter submits
	if len(*got) != 1 || string((*got)[0].pin) != "1234" || (*got)[0].err != nil {
		t.Fatalf("replies %+v", *got)
	}
	if d.entry.Text != "" {
		t.Error("PIN left in the entry")
	}
	if len(w.Canvas().Overlays().List()) != 0 {
		t.Error("dialog still shown")
	}
}

func TestPINDialogEscapeCancels(t *testing.T) {
	d, _, got := newPINTest(t, session.PINRequest{Reader: "Reader 0", TriesLeft: -1})
	test.Type(d.entry, "12")
	d.entry.TypedKey(&fyne.KeyEvent{Name: fyne.KeyEscape})
	if len(*got) != 1 || !errors.Is((*got)[0].err, session.ErrPINCancelled) || (*got)[0].pin != nil {
		t.Fatalf("replies %+v", *got)
	}
	d.cancel() // a second close must not reply twice
	if len(*got) != 1 {
		t.Fatalf("replied %d times", len(*got))
	}
}

// On the final try the person must tick the warning before OK is possible; the tries left are shown.
func TestPINDialogFinalTryNeedsConfirmation(t *testing.T) {
	for _, lang := range words.Langs {
		a := test.NewTempApp(t)
		w := a.NewWindow("t")
		w.Resize(fyne.NewSize(600, 400))
		var got []pinResult
		d := showPINDialog(w, lang, session.PINRequest{Reader: "R", TriesLeft: 1, FinalTry: true},
			func(r pinResult) { got = append(got, r) })
		markup := test.RenderToMarkup(w.Canvas())
		for _, key := range []string{"pin.final_try", "pin.final_try_confirm"} {
			if !strings.Contains(markup, words.T(lang, key, nil)) {
				t.Errorf("%s: %s not shown", lang, key)
			}
		}
		if !strings.Contains(markup, words.T(lang, "pin.tries_left", map[string]any{"Tries": 1})) {
			t.Errorf("%s: tries left not shown", lang)
		}
		test.Type(d.entry, "1234")
		d.entry.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
		if len(got) != 0 {
			t.Fatalf("%s: submitted without confirming the final try", lang)
		}
		test.Tap(d.confirm)
		test.Tap(d.ok)
		if len(got) != 1 || string(got[0].pin) != "1234" {
			t.Fatalf("%s: replies %+v", lang, got)
		}
	}
}

func TestPINDialogPINPad(t *testing.T) {
	d, _, got := newPINTest(t, session.PINRequest{Reader: "R", TriesLeft: -1, PINPad: true})
	if d.entry != nil {
		t.Fatal("PIN pad mode must not show an entry")
	}
	test.Tap(d.ok)
	if len(*got) != 1 || (*got)[0].pin != nil || (*got)[0].err != nil {
		t.Fatalf("replies %+v", *got)
	}
}

func TestPINPrompterHonoursContext(t *testing.T) {
	a := test.NewTempApp(t)
	p := &PINPrompter{Window: a.NewWindow("t"), Lang: words.French}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	pin, err := p.Prompt(ctx, session.PINRequest{Reader: "R", TriesLeft: -1})
	if pin != nil || !errors.Is(err, session.ErrPINCancelled) {
		t.Fatalf("got %v %v, want ErrPINCancelled", pin, err)
	}
}

// With App set, the prompt has a window of its own; closing it cancels.
func TestPINPrompterOwnWindow(t *testing.T) {
	a := newSerialApp(t)
	p := &PINPrompter{App: a, Lang: words.English}
	type res struct {
		pin []byte
		err error
	}
	got := make(chan res, 1)
	go func() {
		pin, err := p.Prompt(context.Background(), session.PINRequest{Reader: "R", TriesLeft: -1})
		got <- res{pin, err}
	}()
	var w fyne.Window
	waitUI(t, "the PIN window", func() bool {
		for _, x := range a.Driver().AllWindows() {
			if x.Title() == words.T(words.English, "pin.title", nil) {
				w = x
			}
		}
		return w != nil
	})
	w.Close()
	r := <-got
	if r.pin != nil || !errors.Is(r.err, session.ErrPINCancelled) {
		t.Fatalf("closing the PIN window: %v %v, want ErrPINCancelled", r.pin, r.err)
	}
}
