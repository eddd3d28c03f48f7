package diagnosis_test

import (
	"testing"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/words"
)

// Every diagnosis code has a message and a remedy in every language.
func TestEveryCodeHasWords(t *testing.T) {
	for _, l := range words.Langs {
		for _, c := range diagnosis.All {
			for _, k := range []string{"code." + string(c) + ".message", "code." + string(c) + ".remedy"} {
				if !words.Has(l, k) {
					t.Errorf("%s: missing %q", l, k)
				}
			}
		}
	}
}
