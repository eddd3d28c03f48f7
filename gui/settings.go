package gui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/lang"
	"fyne.io/fyne/v2/widget"

	"github.com/cardmail/cardmail/words"
)

// prefLanguage is the preference key of the language override: "" (system), "en" or "fr".
const prefLanguage = "language"

// Language returns the language of the app: CARDMAIL_LANG when set, else the person's choice in the settings,
// else the system locale as Fyne reports it.
func Language(a fyne.App) words.Lang {
	if words.Overridden() {
		return words.Detect()
	}
	if l := a.Preferences().String(prefLanguage); l != "" {
		return words.Parse(l)
	}
	return words.Parse(lang.SystemLocale().LanguageString())
}

// showSettings lets the person choose the language; onLang is called with the new language when it changes.
func showSettings(w fyne.Window, a fyne.App, current words.Lang, onLang func(words.Lang)) {
	t := func(k string) string { return words.T(current, k, nil) }
	options := []string{t("settings.lang_system"), "Français", "English"}
	codes := []string{"", string(words.French), string(words.English)}
	sel := widget.NewSelect(options, nil)
	saved := a.Preferences().String(prefLanguage)
	for i, c := range codes {
		if c == saved {
			sel.SetSelectedIndex(i)
		}
	}
	form := widget.NewForm(widget.NewFormItem(t("settings.language"), sel))
	d := dialog.NewCustomConfirm(t("settings.title"), t("pin.ok"), t("pin.cancel"), container.NewPadded(form),
		func(ok bool) {
			if !ok || sel.SelectedIndex() < 0 {
				return
			}
			a.Preferences().SetString(prefLanguage, codes[sel.SelectedIndex()])
			if l := Language(a); l != current {
				onLang(l)
			}
		}, w)
	d.Resize(fyne.NewSize(420, d.MinSize().Height))
	d.Show()
}
