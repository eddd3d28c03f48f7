package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// certJSON is one certificate in `cardmail certs --json`.
type certJSON struct {
	ID            string       `json:"id"`
	Label         string       `json:"label"`
	Subject       string       `json:"subject"`
	SubjectDN     string       `json:"subject_dn"`
	Issuer        string       `json:"issuer"`
	IssuerDN      string       `json:"issuer_dn"`
	Email         string       `json:"email,omitempty"`
	Serial        string       `json:"serial"`
	NotBefore     string       `json:"not_before"`
	NotAfter      string       `json:"not_after"`
	ExpiresInDays *int         `json:"expires_in_days"` // whole days left, negative once expired; null when unreadable
	Expiry        string       `json:"expiry"`          // ok, soon (30 days or fewer), expired, unknown
	KeyType       string       `json:"key_type"`
	KeyBits       int          `json:"key_bits"`
	KeyUsage      []string     `json:"key_usage"`
	ExtKeyUsage   []string     `json:"ext_key_usage"`
	SHA256        string       `json:"sha256"`
	HasPrivateKey bool         `json:"has_private_key"`
	Usable        bool         `json:"usable_for_tls_client_login"`
	Reasons       []reasonJSON `json:"reasons"`
	ParseError    string       `json:"parse_error,omitempty"`
}

type reasonJSON struct {
	Code string `json:"code"`
	Text string `json:"text"`
}

// tokenJSON is one token in `cardmail certs --json`.
type tokenJSON struct {
	Slot         uint       `json:"slot"`
	Reader       string     `json:"reader"`
	Label        string     `json:"label"`
	Serial       string     `json:"serial"`
	Manufacturer string     `json:"manufacturer"`
	Model        string     `json:"model"`
	PINPad       bool       `json:"pin_pad"`
	PINTriesLeft *int       `json:"pin_tries_left"` // from the flags: 0 locked, 1 final try; null when the module does not say
	PINCountLow  bool       `json:"pin_count_low"`
	PINFinalTry  bool       `json:"pin_final_try"`
	PINLocked    bool       `json:"pin_locked"`
	PINState     string     `json:"pin_state"` // ok, count_low, final_try, locked
	RSAPSS       bool       `json:"rsa_pss"`
	Certificates []certJSON `json:"certificates"`
}

type certsJSON struct {
	OK         bool           `json:"ok"`
	Module     string         `json:"module"`
	ModuleInfo moduleInfoJSON `json:"module_info"`
	Tokens     []tokenJSON    `json:"tokens"`
}

// moduleInfoJSON is the PKCS#11 module that was loaded (C_GetInfo).
type moduleInfoJSON struct {
	Path            string `json:"path"`
	Manufacturer    string `json:"manufacturer"`
	Description     string `json:"description"`
	Version         string `json:"version"`
	CryptokiVersion string `json:"cryptoki_version"`
}

func runCerts(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "certs")
	module := fs.String("module", "", "PKCS#11 module path (default: the first known module on this system)")
	asJSON := fs.Bool("json", false, "print JSON")
	if st, ok := parse(fs, args); !ok {
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	inv, err := app.NewCards(app.CardsConfig{}).Inventory(ctx, *module)
	if err != nil {
		return fail(env, *asJSON, err)
	}
	out := inventoryJSON(env.Lang, inv)
	if *asJSON {
		_ = writeJSON(env.Stdout, out)
		return ExitOK
	}
	printTokens(env, out)
	return ExitOK
}

// inventoryJSON is the --json shape of what the module shows without a PIN.
func inventoryJSON(lang words.Lang, inv *app.Inventory) certsJSON {
	mi := inv.Module
	out := certsJSON{OK: true, Module: mi.Path, Tokens: []tokenJSON{}, ModuleInfo: moduleInfoJSON{Path: mi.Path,
		Manufacturer: mi.Manufacturer, Description: mi.Description, Version: mi.Version,
		CryptokiVersion: mi.CryptokiVersion}}
	now := time.Now()
	for _, ti := range inv.Tokens {
		s := ti.Slot
		t := tokenJSON{Slot: s.ID, Reader: s.Description, Label: s.Token.Label, Serial: s.Token.Serial,
			Manufacturer: s.Token.Manufacturer, Model: s.Token.Model, PINPad: s.Token.ProtectedAuthPath,
			PINCountLow: s.Token.UserPINCountLow, PINFinalTry: s.Token.UserPINFinalTry,
			PINLocked: s.Token.UserPINLocked, PINState: string(s.Token.PINState()), RSAPSS: ti.Mechanisms.RSAPSS,
			Certificates: []certJSON{}}
		if n := s.Token.PINTriesLeft(); n >= 0 {
			t.PINTriesLeft = &n
		}
		for i := range ti.Certificates {
			t.Certificates = append(t.Certificates, describeJSON(lang, &ti.Certificates[i], now))
		}
		out.Tokens = append(out.Tokens, t)
	}
	return out
}

func describeJSON(lang words.Lang, c *token.Certificate, now time.Time) certJSON {
	d := token.Describe(c)
	j := certJSON{ID: hex.EncodeToString(c.ID), Label: c.Label, Subject: d.Subject, SubjectDN: d.SubjectDN,
		Issuer: d.Issuer, IssuerDN: d.IssuerDN, Email: d.Email, Serial: d.Serial, NotBefore: d.NotBefore,
		NotAfter: d.NotAfter, KeyType: d.KeyType, KeyBits: d.KeyBits, KeyUsage: orEmpty(d.KeyUsage),
		ExtKeyUsage: orEmpty(d.ExtKeyUsage), SHA256: d.SHA256, HasPrivateKey: c.HasPrivateKey, Usable: d.Usable,
		Reasons: []reasonJSON{}, ParseError: d.ParseError}
	for _, r := range d.Reasons {
		j.Reasons = append(j.Reasons, reasonJSON{Code: string(r), Text: words.T(lang, "reason."+string(r), nil)})
	}
	days, state, ok := c.Expiry(now)
	if ok {
		j.ExpiresInDays = &days
	}
	j.Expiry = string(state)
	return j
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func printTokens(env Env, out certsJSON) {
	if len(out.Tokens) == 0 {
		fmt.Fprintln(env.Stdout, words.T(env.Lang, "certs.none", nil))
		return
	}
	mi := out.ModuleInfo
	if mi.Description != "" || mi.Manufacturer != "" {
		fmt.Fprintln(env.Stdout, words.T(env.Lang, "health.module", map[string]any{"Description": mi.Description,
			"Version": mi.Version, "Manufacturer": mi.Manufacturer, "Path": mi.Path}))
	} else {
		fmt.Fprintln(env.Stdout, words.T(env.Lang, "health.module_path", map[string]any{"Path": mi.Path}))
	}
	for _, t := range out.Tokens {
		fmt.Fprintf(env.Stdout, "%s — %s (serial %s)\n", t.Reader, t.Label, t.Serial)
		fmt.Fprintf(env.Stdout, "  %s\n", words.T(env.Lang, "health.pin."+t.PINState, nil))
		for _, c := range t.Certificates {
			verdict := words.T(env.Lang, "cert.usable", nil)
			if !c.Usable {
				texts := make([]string, len(c.Reasons))
				for i, r := range c.Reasons {
					texts[i] = r.Text
				}
				verdict = words.T(env.Lang, "cert.unusable_because", map[string]any{"Reasons": strings.Join(texts, ", ")})
			}
			fmt.Fprintf(env.Stdout, "  [%s] %s\n", c.ID, c.Subject)
			fmt.Fprintf(env.Stdout, "      %s\n", words.T(env.Lang, "cert.issuer", map[string]any{"Issuer": c.Issuer}))
			if c.ExpiresInDays != nil {
				fmt.Fprintf(env.Stdout, "      %s\n", expiryText(env.Lang, c))
			}
			fmt.Fprintf(env.Stdout, "      %s %d, %s / %s\n", c.KeyType, c.KeyBits, strings.Join(c.KeyUsage, ","),
				strings.Join(c.ExtKeyUsage, ","))
			fmt.Fprintf(env.Stdout, "      SHA-256 %s\n      => %s\n", c.SHA256, verdict)
		}
	}
}

// expiryText is a certificate's end in words: the date and the days left, and from 30 days before the end (or once
// it has passed) what to do.
func expiryText(lang words.Lang, c certJSON) string {
	days, date := *c.ExpiresInDays, c.NotAfter[:10]
	data := map[string]any{"Days": days, "Date": date}
	switch token.ExpiryState(c.Expiry) {
	case token.ExpirySoon:
		if days == 0 {
			return words.T(lang, "health.expiry.today", data)
		}
		return words.T(lang, "health.expiry.soon", data)
	case token.ExpiryExpired:
		return words.T(lang, "health.expiry.expired", data)
	}
	return words.T(lang, "cert.valid_until", data) + " (" + words.T(lang, "health.days_left", data) + ")"
}
