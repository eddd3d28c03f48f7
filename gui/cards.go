package gui

import (
	"context"
	"errors"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// CardService is what the cards view needs: the readers, the certificates of the present cards, and card events.
// *app.Cards implements it; tests give fakes.
type CardService interface {
	Readers(ctx context.Context) ([]reader.Reader, error)
	Certificates(ctx context.Context) ([]session.CardCert, error)
	Subscribe(fn func(session.Event)) (unsubscribe func())
}

// tickHealth recomputes the health display every healthRefresh until the view ends (a chain of timers: no goroutine
// waits in between).
func (v *cardsView) tickHealth() {
	time.AfterFunc(healthRefresh, func() {
		if v.stopped.Load() {
			return
		}
		v.do(func() { v.health.update(v.certs, v.svc) })
		v.tickHealth()
	})
}

// cardsView shows the readers and the certificates of the present cards, refreshed after every card event. All its
// fields are touched on the UI goroutine only; background work hands results over with fyne.Do.
type cardsView struct {
	life
	svc  CardService
	lang words.Lang

	readers    []reader.Reader
	readersErr error
	certs      []session.CardCert
	certsErr   error

	banner       *widget.Label
	readerStatus *widget.Label // why no reader is shown: the words of a reader.Problem; hidden when readers are listed
	readerList   *widget.List
	certList     *widget.List
	certStatus   *widget.Label
	progress     *widget.ProgressBarInfinite
	health       *healthView
	root         *fyne.Container // content(), laid out again when the health display changes height

	mu     sync.Mutex // guards seq and cancel, which background goroutines read
	seq    int
	cancel context.CancelFunc
}

func newCardsView(svc CardService, lang words.Lang) *cardsView {
	v := &cardsView{svc: svc, lang: lang}
	v.banner = widget.NewLabel("")
	v.banner.Importance = widget.DangerImportance
	v.banner.Wrapping = fyne.TextWrapWord
	v.banner.Hide()
	v.readerStatus = widget.NewLabel("")
	v.readerStatus.Wrapping = fyne.TextWrapWord
	v.readerStatus.Importance = widget.WarningImportance
	v.readerStatus.Hide()
	v.certStatus = widget.NewLabel("")
	v.certStatus.Wrapping = fyne.TextWrapWord
	v.progress = widget.NewProgressBarInfinite()
	v.progress.Hide()
	v.health = newHealthView(lang)
	v.tickHealth()

	// Readers are a status list, not choices: each row says whether a card is in, under the reader's name (cut
	// with an ellipsis: real names reach 80 bytes).
	v.readerList = widget.NewList(
		func() int { return len(v.readers) },
		func() fyne.CanvasObject {
			name := widget.NewLabel("reader")
			name.Truncation = fyne.TextTruncateEllipsis
			state := widget.NewLabel("state")
			return container.NewBorder(nil, nil, widget.NewIcon(theme.ComputerIcon()), nil, container.NewVBox(name, state))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(v.readers) {
				return
			}
			r := v.readers[i]
			lines := o.(*fyne.Container).Objects[0].(*fyne.Container).Objects
			name, state := lines[0].(*widget.Label), lines[1].(*widget.Label)
			state.Importance = widget.LowImportance
			state.SetText(v.t("reader.card_absent", nil))
			if r.CardPresent {
				state.Importance = widget.SuccessImportance
				state.SetText(v.t("reader.card_present", nil))
			}
			name.SetText(r.Name)
		})

	v.certList = widget.NewList(
		func() int { return len(v.certs) },
		func() fyne.CanvasObject { return newIconRow(theme.ConfirmIcon(), false) },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(v.certs) {
				return
			}
			fillCertRow(v.lang, v.certs[i], o, certDetail{reader: true, verdictText: true})
		})
	return v
}

func (v *cardsView) t(key string, data map[string]any) string { return words.T(v.lang, key, data) }

// content lays the view out.
func (v *cardsView) content() fyne.CanvasObject {
	readers := container.NewBorder(container.NewVBox(widget.NewLabelWithStyle(v.t("readers.title", nil),
		fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), v.readerStatus), nil, nil, nil, v.readerList)
	certs := container.NewBorder(container.NewVBox(widget.NewLabelWithStyle(v.t("certs.title", nil),
		fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), v.progress, v.certStatus), nil, nil, nil, v.certList)
	split := container.NewHSplit(readers, certs)
	split.Offset = 0.35
	v.root = container.NewBorder(container.NewVBox(v.banner, v.health.content()), nil, nil, nil, split)
	return v.root
}

// onEvent is called by the session manager on its goroutine: it must not block or touch widgets directly.
func (v *cardsView) onEvent(ev session.Event) {
	switch ev.Kind {
	case session.CardRemoved:
		v.do(func() { v.showBanner(v.t("banner.card_removed", nil)) })
	case session.CardInserted:
		v.do(func() { v.banner.Hide() })
	}
	v.refresh()
}

func (v *cardsView) showBanner(text string) {
	v.banner.SetText(text)
	v.banner.Show()
}

// refresh reloads readers and certificates in the background; a newer refresh supersedes an older one. Safe to
// call from any goroutine.
func (v *cardsView) refresh() {
	v.mu.Lock()
	v.seq++
	seq := v.seq
	if v.cancel != nil {
		v.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	v.cancel = cancel
	v.mu.Unlock()

	v.do(func() {
		v.progress.Show()
		v.progress.Start()
		v.certStatus.SetText(v.t("certs.loading", nil))
	})
	go func() {
		defer cancel()
		rs, rerr := v.svc.Readers(ctx)
		cs, cerr := v.svc.Certificates(ctx)
		v.do(func() {
			v.mu.Lock()
			latest := seq == v.seq
			v.mu.Unlock()
			if !latest {
				return
			}
			v.apply(rs, rerr, cs, cerr)
		})
	}()
}

// apply shows a refresh's results; UI goroutine only.
func (v *cardsView) apply(rs []reader.Reader, rerr error, cs []session.CardCert, cerr error) {
	v.progress.Stop()
	v.progress.Hide()
	v.readers, v.readersErr = rs, rerr
	v.certs, v.certsErr = cs, cerr
	switch {
	case rerr != nil: // every PC/SC failure in words (service stopped, no reader, internal error...), code after
		v.readerStatus.SetText(v.t(reader.ProblemOf(rerr).WordsKey(), map[string]any{"Code": reader.Detail(rerr)}))
		v.readerStatus.Show()
	case len(rs) == 0:
		v.readerStatus.SetText(v.t(reader.ProblemNoReader.WordsKey(), nil))
		v.readerStatus.Show()
	default:
		v.readerStatus.Hide()
	}
	switch {
	case cerr == nil && len(cs) == 0, errors.Is(cerr, session.ErrCardAbsent):
		v.certStatus.SetText(v.t("certs.none", nil))
	case cerr != nil:
		message, remedy := explainError(v.lang, cerr)
		v.certStatus.SetText(message + " " + remedy)
	default:
		v.certStatus.SetText("")
	}
	v.health.update(cs, v.svc)
	if v.root != nil {
		v.root.Refresh() // lays the health display out at its new height, and refreshes the lists
		return
	}
	v.readerList.Refresh()
	v.certList.Refresh()
}
