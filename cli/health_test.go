package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/words"
)

// TestCertsCardHealthOnTheBench: `cardmail certs` on the bench's virtual card whose certificate ends in 12 days and
// that has one PIN try left: the JSON fields of the contract (expires_in_days, pin_tries_left beside the flags,
// module_info) and the plain words in French and English, with what to do.
func TestCertsCardHealthOnTheBench(t *testing.T) {
	b := bench.Start(t)
	id, err := b.PKI.Identity("Dr Carole Lenoir", bench.IdentityOptions{NotAfter: time.Now().Add(12*24*time.Hour + time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	b.Cards[0] = bench.NewCard(id, bench.CardOptions{Tries: 1})
	b.InsertWait(t, 0, 0)
	ctx := context.Background()

	st, out, errs := run(t, ctx, "certs", "--module", b.OpenSC, "--json")
	if st != ExitOK {
		t.Fatalf("certs --json: %d %s %s", st, out, errs)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	mi, _ := raw["module_info"].(map[string]any)
	if mi == nil || mi["path"] != b.OpenSC || mi["manufacturer"] != "OpenSC Project" ||
		!strings.Contains(mi["description"].(string), "OpenSC") || !strings.HasPrefix(mi["version"].(string), "0.") {
		t.Fatalf("module_info %v", raw["module_info"])
	}
	tokens := raw["tokens"].([]any)
	if len(tokens) != 1 {
		t.Fatalf("tokens: %v", tokens)
	}
	tok := tokens[0].(map[string]any)
	if tok["pin_tries_left"] != 1.0 || tok["pin_final_try"] != true || tok["pin_locked"] != false || tok["pin_count_low"] != false {
		t.Fatalf("token PIN state %v", tok)
	}
	cert := tok["certificates"].([]any)[0].(map[string]any)
	if cert["expires_in_days"] != 12.0 || cert["expiry"] != "soon" {
		t.Fatalf("certificate expiry %v / %v", cert["expires_in_days"], cert["expiry"])
	}

	for _, lang := range words.Langs {
		var o, e strings.Builder
		if st := Run(ctx, Env{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e, Lang: lang}, []string{"certs", "--module", b.OpenSC}); st != ExitOK {
			t.Fatalf("%s: certs: %d %s", lang, st, e.String())
		}
		date := id.Cert.NotAfter.UTC().Format("2006-01-02")
		for _, want := range []string{
			words.T(lang, "health.expiry.soon", map[string]any{"Days": 12, "Date": date}),
			words.T(lang, "health.pin.final_try", nil),
			words.T(lang, "health.module", map[string]any{"Description": mi["description"], "Version": mi["version"],
				"Manufacturer": "OpenSC Project", "Path": b.OpenSC}),
		} {
			if !strings.Contains(o.String(), want) {
				t.Errorf("%s: certs does not say %q:\n%s", lang, want, o.String())
			}
		}
	}

	// A card with the default counter: the module does not give the count, so pin_tries_left is null.
	b.RemoveWait(t, 0)
	b.InsertWait(t, 1, 0)
	_, out, _ = run(t, ctx, "certs", "--module", b.OpenSC, "--json")
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	tok = raw["tokens"].([]any)[0].(map[string]any)
	if v, present := tok["pin_tries_left"]; !present || v != nil || tok["pin_state"] != "ok" {
		t.Fatalf("default card: pin_tries_left %v (present %v), state %v", v, present, tok["pin_state"])
	}
	cert = tok["certificates"].([]any)[0].(map[string]any)
	if d, _ := cert["expires_in_days"].(float64); d < 300 || cert["expiry"] != "ok" {
		t.Fatalf("default card: expires_in_days %v, expiry %v", cert["expires_in_days"], cert["expiry"])
	}
}
