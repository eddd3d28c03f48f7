package gui

import (
	"cmp"
	"slices"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// cacheWarning is the main window's notice that CardMail has no per-user cache directory (err from
// accounts.DefaultDirs); nil when err is nil.
func cacheWarning(lang words.Lang, err error) fyne.CanvasObject {
	if err == nil {
		return nil
	}
	l := widget.NewLabel(words.T(lang, "cache.none", nil))
	l.Wrapping = fyne.TextWrapWord
	l.Importance = widget.WarningImportance
	return l
}

// moduleInfoer is what the health display needs beyond CardService: the PKCS#11 module the cards were read with.
// *app.Cards has it; fakes may.
type moduleInfoer interface {
	ModuleInfo() (token.ModuleInfo, bool)
}

// healthLine is one sentence of the card health display with its importance (warning for what needs the person's
// action soon, danger for what stops the card working).
type healthLine struct {
	text       string
	importance widget.Importance
}

// cardHealth is the health of one card: its label and reader, and its sentences.
type cardHealth struct {
	title string
	lines []healthLine
}

// cardsHealth groups certs by card (reader and token serial) and says, per card, when its certificate ends (the
// earliest end among the certificates that have a private key, else among all), with a warning from
// token.ExpiryWarningDays days, and the PIN state the token's flags tell, with what to do in each case.
func cardsHealth(lang words.Lang, certs []session.CardCert, now time.Time) []cardHealth {
	type key struct{ reader, serial string }
	groups := map[key][]session.CardCert{}
	var order []key
	for _, c := range certs {
		k := key{c.Reader, c.TokenSerial}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	out := make([]cardHealth, 0, len(order))
	for _, k := range order {
		g := groups[k]
		withKey := slices.DeleteFunc(slices.Clone(g), func(c session.CardCert) bool { return !c.HasPrivateKey })
		if len(withKey) == 0 {
			withKey = g
		}
		first := slices.MinFunc(withKey, func(a, b session.CardCert) int {
			return a.NotAfter().Compare(b.NotAfter()) // a malformed certificate (zero time) comes first
		})
		h := cardHealth{title: cmp.Or(g[0].Token.Label, g[0].TokenLabel, first.CommonName())}
		if k.reader != "" {
			h.title += " — " + k.reader
		}
		h.lines = append(h.lines, expiryLine(lang, &first.Certificate, now), pinLine(lang, g[0].Token))
		out = append(out, h)
	}
	return out
}

func expiryLine(lang words.Lang, c *token.Certificate, now time.Time) healthLine {
	days, state, _ := c.Expiry(now)
	data := map[string]any{"Days": days, "Date": c.NotAfter().UTC().Format("2006-01-02")}
	key, imp := "health.expiry."+string(state), widget.MediumImportance
	switch state {
	case token.ExpirySoon:
		imp = widget.WarningImportance
		if days == 0 {
			key = "health.expiry.today"
		}
	case token.ExpiryExpired, token.ExpiryUnknown:
		imp = widget.DangerImportance
	}
	return healthLine{words.T(lang, key, data), imp}
}

func pinLine(lang words.Lang, ti token.TokenInfo) healthLine {
	st := ti.PINState()
	imp := widget.MediumImportance
	switch st {
	case token.PINStateCountLow, token.PINStateFinalTry:
		imp = widget.WarningImportance
	case token.PINStateLocked:
		imp = widget.DangerImportance
	}
	return healthLine{words.T(lang, "health.pin."+string(st), nil), imp}
}

// moduleLine names the PKCS#11 module ("" before any card was read).
func moduleLine(lang words.Lang, m token.ModuleInfo, ok bool) string {
	switch {
	case !ok:
		return ""
	case m.Description == "" && m.Manufacturer == "":
		return words.T(lang, "health.module_path", map[string]any{"Path": m.Path})
	}
	return words.T(lang, "health.module", map[string]any{"Description": m.Description, "Version": m.Version,
		"Manufacturer": m.Manufacturer, "Path": m.Path})
}

// healthView shows the card health in the main window, above the readers and certificates: per card its label and
// reader in bold, when its certificate ends and its PIN state, each sentence coloured by how urgent it is; then the
// card middleware in grey. UI goroutine only.
type healthView struct {
	lang words.Lang
	now  func() time.Time // time.Now; tests fix it
	box  *fyne.Container
}

// healthRefresh is how often the cards view recomputes the health display without a card event: a window left open
// for days still counts the days down (and turns to a warning 30 days before the end).
var healthRefresh = time.Hour

func newHealthView(lang words.Lang) *healthView {
	return &healthView{lang: lang, now: time.Now, box: container.NewVBox()}
}

func (h *healthView) content() fyne.CanvasObject { return h.box }

// importanceColor is the theme colour of a sentence of the given importance.
var importanceColor = map[widget.Importance]fyne.ThemeColorName{
	widget.WarningImportance: theme.ColorNameWarning,
	widget.DangerImportance:  theme.ColorNameError,
}

// update shows the health of the cards certs come from, and the module svc read them with when it says. Nothing
// is shown without a card.
func (h *healthView) update(certs []session.CardCert, svc CardService) {
	var objs []fyne.CanvasObject
	cards := cardsHealth(h.lang, certs, h.now())
	for _, c := range cards {
		segs := []widget.RichTextSegment{&widget.TextSegment{Text: c.title + " ",
			Style: widget.RichTextStyle{Inline: true, TextStyle: fyne.TextStyle{Bold: true}}}}
		for _, l := range c.lines { // one sentence a line, the first after the title
			segs = append(segs, &widget.TextSegment{Text: l.text,
				Style: widget.RichTextStyle{ColorName: importanceColor[l.importance]}})
		}
		rt := widget.NewRichText(segs...)
		rt.Wrapping = fyne.TextWrapWord
		objs = append(objs, rt)
	}
	if mi, ok := svc.(moduleInfoer); ok && len(cards) > 0 {
		info, known := mi.ModuleInfo()
		if s := moduleLine(h.lang, info, known); s != "" {
			rt := widget.NewRichText(&widget.TextSegment{Text: s,
				Style: widget.RichTextStyle{ColorName: theme.ColorNamePlaceHolder}})
			rt.Wrapping = fyne.TextWrapBreak
			objs = append(objs, rt)
		}
	}
	h.box.Objects = objs
	h.box.Refresh()
}
