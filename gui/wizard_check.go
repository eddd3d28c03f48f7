package gui

import (
	"context"
	"errors"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/profile"
)

// checkPage is the live test: IMAP then SMTP with the card, the step ladder filling as it goes, Stop, Test again,
// and the report of a failure under Details. It runs on arrival unless the settings are the ones last tested.
type checkPage struct {
	z      *wizard
	ladder *StepLadder
	msg    *widget.RichText
	remedy *widget.Label
	again  *keyButton
	stop   *keyButton
	detail *keyButton
	run    *job

	ok     bool             // the last completed test succeeded
	tested *profile.Profile // the candidate the last completed test was for, nil before one
	report *diagnosis.Report
}

func (p *checkPage) build() fyne.CanvasObject {
	z := p.z
	p.ladder = NewStepLadder(z.lang)
	p.msg = widget.NewRichText()
	p.msg.Wrapping = fyne.TextWrapWord
	p.remedy = wrapped("")
	p.remedy.Hide()
	p.again = newKeyButton(z.keys, z.t("wizard.test.again", nil), theme.ViewRefreshIcon(), p.start)
	p.stop = newKeyButton(z.keys, z.t("wizard.stop", nil), theme.CancelIcon(), func() { p.run.stop() })
	p.detail = newKeyButton(z.keys, z.t("picker.details", nil), theme.InfoIcon(), p.showDetails)
	p.detail.Hide()
	p.run = z.newJob(wizardTestTimeout, func(on bool) {
		if on {
			p.again.Disable()
			p.stop.Enable()
		} else {
			p.ladder.SetRunning(false)
			p.again.Enable()
			p.stop.Disable()
		}
	})
	return container.NewBorder(nil, container.NewHBox(p.stop, p.again, p.detail), nil, nil,
		container.NewVScroll(container.NewVBox(wrapped(z.t("wizard.test.intro", nil)), p.ladder, p.msg, p.remedy)))
}

func (p *checkPage) first() fyne.Focusable { return p.stop }
func (p *checkPage) valid() bool           { return !p.run.busy() }

// enter tests the settings unless a test runs or the last one was for these very settings.
func (p *checkPage) enter() {
	if !p.run.busy() && !p.testedNow() {
		p.start()
	}
}

// testedNow reports whether the last completed test was for the draft as it is now.
func (p *checkPage) testedNow() bool {
	return p.tested != nil && p.tested.SameConnection(p.z.d.candidate())
}

// passed reports whether the draft as it is now passed the test.
func (p *checkPage) passed() bool { return p.ok && p.testedNow() }

// start checks IMAP then SMTP in the background, showing the ladder live; Stop cancels it.
func (p *checkPage) start() {
	z := p.z
	cand, svc := z.d.candidate(), z.deps.Mail
	p.ok, p.report = false, nil
	p.ladder.Reset()
	p.msg.Segments = []widget.RichTextSegment{&widget.TextSegment{Text: z.t("wizard.test.running", nil)}}
	p.msg.Refresh()
	p.remedy.Hide()
	p.detail.Hide()
	p.run.start(func(ctx context.Context, r run) {
		var last *diagnosis.Report
		for _, proto := range []string{diagnosis.ProtocolIMAP, diagnosis.ProtocolSMTP} {
			r.show(func() {
				p.ladder.AddSection(z.t("diag.protocol."+proto, nil))
				p.ladder.SetRunning(true)
			})
			rep := svc.Check(ctx, cand, proto, func(s diagnosis.Step) { r.show(func() { p.ladder.Add(s) }) })
			last = rep
			r.show(func() {
				if rep != nil {
					p.ladder.SetSteps(rep.Steps)
				}
			})
			if rep == nil || !rep.OK || ctx.Err() != nil {
				break
			}
		}
		stopped := errors.Is(ctx.Err(), context.Canceled)
		r.end(func() { p.finished(cand, last, stopped) })
	})
	z.update()
}

// finished shows the outcome of a test of cand: success, the person's stop, or the failure's message and remedy
// with Details.
func (p *checkPage) finished(cand *profile.Profile, r *diagnosis.Report, stopped bool) {
	z := p.z
	p.tested, p.report = cand, r
	switch {
	case stopped:
		p.ok = false
		p.msg.Segments = []widget.RichTextSegment{&widget.TextSegment{Style: widget.RichTextStyleStrong,
			Text: z.t("wizard.test.stopped", nil)}}
	case r != nil && r.OK:
		p.ok = true
		p.msg.Segments = []widget.RichTextSegment{&widget.TextSegment{Style: widget.RichTextStyleSubHeading,
			Text: headline(z.lang, diagnosis.OK)}}
	default:
		p.ok = false
		code := diagnosis.Internal
		if r != nil && r.Code != "" {
			code = r.Code
		}
		p.msg.Segments = []widget.RichTextSegment{
			&widget.TextSegment{Style: widget.RichTextStyleSubHeading, Text: headline(z.lang, code)}}
		what := remedy(z.lang, code)
		if g := z.d.guesses(); len(g) > 0 {
			what += "\n" + z.t("wizard.test.guessed", map[string]any{"Hosts": strings.Join(g, ", ")})
		}
		p.remedy.SetText(what)
		p.remedy.Show()
		if r != nil {
			p.detail.Show()
		}
	}
	p.msg.Refresh()
	z.update()
	if z.page == pageTest {
		if p.detail.Visible() {
			z.win.Canvas().Focus(p.detail)
		} else {
			z.win.Canvas().Focus(z.next)
		}
	}
}

func (p *checkPage) showDetails() {
	if p.report != nil {
		ShowDiagnostics(p.z.win, p.z.lang, p.report)
	}
}
