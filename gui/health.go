package gui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"

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
