package words

import (
	"strings"
	"testing"
)

// The two languages have the same keys (every diagnosis code's words are checked in package diagnosis).
func TestLanguagesHaveTheSameKeys(t *testing.T) {
	loadOnce.Do(load)
	for k := range tables[English] {
		if _, ok := tables[French][k]; !ok {
			t.Errorf("fr: missing %q", k)
		}
	}
	for k := range tables[French] {
		if _, ok := tables[English][k]; !ok {
			t.Errorf("en: missing %q", k)
		}
	}
}

func TestTemplatesAndFallback(t *testing.T) {
	tests := []struct {
		lang Lang
		key  string
		data map[string]any
		want string
	}{
		{English, "pin.tries_left", map[string]any{"Tries": 2}, "Tries left: 2"},
		{French, "pin.tries_left", map[string]any{"Tries": 1}, "Essais restants : 1"},
		{French, "no.such.key", nil, "no.such.key"},
		{English, "pin.tries_left", nil, "Tries left: {{.Tries}}"},
	}
	for _, tt := range tests {
		if got := T(tt.lang, tt.key, tt.data); got != tt.want {
			t.Errorf("T(%s, %s) = %q, want %q", tt.lang, tt.key, got, tt.want)
		}
	}
	if !strings.Contains(Message(French, "card_absent"), "carte") {
		t.Errorf("French card_absent message: %q", Message(French, "card_absent"))
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Lang{"fr_FR.UTF-8": French, "FR": French, "en_GB": English, "C": English, "de": English} {
		if got := Parse(in); got != want {
			t.Errorf("Parse(%q) = %s, want %s", in, got, want)
		}
	}
}
