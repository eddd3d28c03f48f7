package gui

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/words"
)

// The saved language choice applies to the whole window, and a change rebuilds it in the new language.
func TestMainWindowLanguage(t *testing.T) {
	t.Setenv("CARDMAIL_LANG", "")
	a := newSerialApp(t)
	a.Preferences().SetString(prefLanguage, "fr")
	fake := &fakeCards{readers: []reader.Reader{{Name: "Reader 0"}}}
	w := NewMainWindow(a, Options{Cards: fake})
	waitUI(t, "French labels", func() bool {
		return strings.Contains(test.RenderToMarkup(w.Canvas()), words.T(words.French, "readers.title", nil))
	})
	a.Preferences().SetString(prefLanguage, "en")
	if Language(a) != words.English {
		t.Fatal("preference not applied")
	}
}
