package gui

import (
	"net/url"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/cardmail/cardmail/version"
	"github.com/cardmail/cardmail/words"
)

// The About dialog shows the stamped version, the commit only when known, the license line and both links, in
// each language.
func TestAboutContent(t *testing.T) {
	tests := []struct {
		name            string
		lang            words.Lang
		version, commit string
		wantCommit      bool
	}{
		{"english stamped", words.English, "0.1.0", "abc1234", true},
		{"french stamped", words.French, "0.1.0", "abc1234", true},
		{"english unstamped", words.English, "dev", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldV, oldC := version.Version, version.Commit
			t.Cleanup(func() { version.Version, version.Commit = oldV, oldC })
			version.Version, version.Commit = tt.version, tt.commit
			test.NewTempApp(t)
			w := test.NewWindow(aboutContent(tt.lang))
			t.Cleanup(w.Close)
			markup := test.RenderToMarkup(w.Canvas())
			want := []string{
				appName,
				words.T(tt.lang, "about.version", map[string]any{"Version": tt.version}),
				words.T(tt.lang, "about.license", nil),
				words.T(tt.lang, "about.website", nil),
				words.T(tt.lang, "about.issues", nil),
			}
			for _, s := range want {
				if !strings.Contains(markup, s) {
					t.Errorf("About does not show %q:\n%s", s, markup)
				}
			}
			commit := words.T(tt.lang, "about.commit", map[string]any{"Commit": tt.commit})
			if got := strings.Contains(markup, commit); got != tt.wantCommit {
				t.Errorf("commit line %q shown = %v, want %v", commit, got, tt.wantCommit)
			}
		})
	}
}

// Every about.* key the dialog uses has a text in both languages (not the key itself).
func TestAboutWords(t *testing.T) {
	for _, l := range words.Langs {
		for _, k := range []string{"about.title", "about.close", "about.version", "about.commit", "about.license", "about.website", "about.issues"} {
			if !words.Has(l, k) {
				t.Errorf("%s: no text for %q", l, k)
			}
		}
	}
}

func TestAboutLinks(t *testing.T) {
	for _, raw := range []string{aboutWebsiteURL, aboutIssuesURL} {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			t.Errorf("link %q: %v %+v", raw, err, u)
		}
	}
}

// ShowAbout opens a dialog on the window without blocking.
func TestShowAbout(t *testing.T) {
	test.NewTempApp(t)
	w := test.NewWindow(nil)
	t.Cleanup(w.Close)
	ShowAbout(w, words.English)
	if !strings.Contains(test.RenderToMarkup(w.Canvas()), words.T(words.English, "about.title", nil)) {
		t.Fatal("About dialog not shown")
	}
}
