// Package words holds every sentence CardMail shows a person, in French and English, for the CLI and for reports.
//
// The sentences live in assets/translations/<lang>.json (keys like "code.card_absent.message"); the GUI reads the
// same files through Fyne's lang package, so a sentence is written once. Templates use go-i18n's syntax
// ("{{.Tries}}"), which both readers understand.
package words

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"text/template"

	"github.com/cardmail/cardmail/assets"
)

// Lang is a supported language tag.
type Lang string

// The supported languages. English is the fallback for a missing key.
const (
	English Lang = "en"
	French  Lang = "fr"
)

// Langs lists the supported languages.
var Langs = []Lang{English, French}

var (
	loadOnce sync.Once
	tables   map[Lang]map[string]string
	loadErr  error
)

func load() {
	tables = map[Lang]map[string]string{}
	for _, l := range Langs {
		b, err := assets.Translations.ReadFile("translations/" + string(l) + ".json")
		if err != nil {
			loadErr = err
			return
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			loadErr = err
			return
		}
		tables[l] = m
	}
}

// Has reports whether key has a text in language l (without falling back to English).
func Has(l Lang, key string) bool {
	loadOnce.Do(load)
	_, ok := tables[l][key]
	return ok
}

// T returns the text for key in language l, with {{.Name}} placeholders filled from data (nil when none). A key
// missing in l falls back to English, then to the key itself, so a missing translation is visible but never fatal.
func T(l Lang, key string, data map[string]any) string {
	loadOnce.Do(load)
	if loadErr != nil {
		return key
	}
	s, ok := tables[l][key]
	if !ok {
		if s, ok = tables[English][key]; !ok {
			return key
		}
	}
	if data == nil || !strings.Contains(s, "{{") {
		return s
	}
	t, err := template.New(key).Option("missingkey=zero").Parse(s)
	if err != nil {
		return s
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return s
	}
	return b.String()
}

// Detect picks the language from CARDMAIL_LANG, then LC_ALL, LC_MESSAGES and LANG (POSIX precedence): French when
// the first one set starts with "fr", else English.
func Detect() Lang {
	for _, v := range []string{"CARDMAIL_LANG", "LC_ALL", "LC_MESSAGES", "LANG"} {
		if s := os.Getenv(v); s != "" {
			return Parse(s)
		}
	}
	return English
}

// Parse maps a locale string such as "fr_FR.UTF-8" or "en-GB" to a supported language (English by default).
func Parse(locale string) Lang {
	if strings.HasPrefix(strings.ToLower(locale), "fr") {
		return French
	}
	return English
}

// Overridden reports whether CARDMAIL_LANG forces the language (the GUI's language setting then does not apply).
func Overridden() bool { return os.Getenv("CARDMAIL_LANG") != "" }
