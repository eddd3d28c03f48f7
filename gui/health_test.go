package gui

import (
	"errors"
	"testing"

	"github.com/cardmail/cardmail/words"
)

func TestCacheWarningInMainWindow(t *testing.T) {
	for _, lang := range words.Langs {
		t.Setenv("CARDMAIL_LANG", "")
		a := newSerialApp(t)
		mw := newMainWindow(a, Options{Cards: fixedCards(t), Lang: lang, CacheErr: errors.New("no HOME")})
		if !shows(mw.win.Canvas(), words.T(lang, "cache.none", nil)) {
			t.Errorf("%s: the window does not say there is no cache", lang)
		}
		mw = newMainWindow(a, Options{Cards: fixedCards(t), Lang: lang})
		if shows(mw.win.Canvas(), words.T(lang, "cache.none", nil)) {
			t.Errorf("%s: cache warning without an error", lang)
		}
	}
}
