package gui

import (
	"net/url"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/version"
	"github.com/cardmail/cardmail/words"
)

// Where the About dialog's links go. Both must parse as absolute https URLs (TestAboutLinks).
const (
	aboutWebsiteURL = "https://github.com/cardmail/cardmail"
	aboutIssuesURL  = "https://github.com/cardmail/cardmail/issues"
)

// appName is the product name shown as the About dialog's heading; it is a name, not a sentence to translate.
const appName = "CardMail"

// ShowAbout opens the About dialog on w in language lang: the product name, the version and the build commit as
// stamped by packaging/version.sh (package version: "dev" and no commit line for an unstamped build), the license
// line and links to the project's site and issue tracker. Every sentence comes from package words (keys
// "about.*"). It returns at once; the dialog closes with its button.
func ShowAbout(w fyne.Window, lang words.Lang) {
	t := func(k string) string { return words.T(lang, k, nil) }
	dialog.NewCustom(t("about.title"), t("about.close"), aboutContent(lang), w).Show()
}

// aboutContent builds the About dialog's body (separate from ShowAbout so tests can render it).
func aboutContent(lang words.Lang) fyne.CanvasObject {
	t := func(k string, data map[string]any) string { return words.T(lang, k, data) }
	name := widget.NewLabelWithStyle(appName, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	rows := []fyne.CanvasObject{
		name,
		widget.NewLabel(t("about.version", map[string]any{"Version": version.Version})),
	}
	if version.Commit != "" {
		rows = append(rows, widget.NewLabel(t("about.commit", map[string]any{"Commit": version.Commit})))
	}
	rows = append(rows, widget.NewLabel(t("about.license", nil)))
	for _, l := range []struct{ key, raw string }{{"about.website", aboutWebsiteURL}, {"about.issues", aboutIssuesURL}} {
		if u, err := url.Parse(l.raw); err == nil {
			rows = append(rows, widget.NewHyperlink(t(l.key, nil), u))
		}
	}
	return container.NewVBox(rows...)
}
