package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/cardmail/cardmail/diagnosis"
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
	PINCountLow  bool       `json:"pin_count_low"`
	PINFinalTry  bool       `json:"pin_final_try"`
	PINLocked    bool       `json:"pin_locked"`
	RSAPSS       bool       `json:"rsa_pss"`
	Certificates []certJSON `json:"certificates"`
}

type certsJSON struct {
	OK     bool        `json:"ok"`
	Module string      `json:"module"`
	Tokens []tokenJSON `json:"tokens"`
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
	mod, err := token.ResolveModule(*module)
	if err != nil {
		return fail(env, *asJSON, diagnosis.ModuleNotFound, err)
	}
	out, err := listTokens(ctx, env.Lang, mod.Path)
	if err != nil {
		return fail(env, *asJSON, diagnosis.OfCardError(err), err)
	}
	if *asJSON {
		_ = writeJSON(env.Stdout, out)
		return ExitOK
	}
	printTokens(env, out)
	return ExitOK
}

// listTokens reads every token of the module and its certificates, without a PIN, in a short-lived agent.
func listTokens(ctx context.Context, lang words.Lang, module string) (certsJSON, error) {
	out := certsJSON{OK: true, Module: module, Tokens: []tokenJSON{}}
	c, err := token.Start(ctx, module)
	if err != nil {
		return out, err
	}
	defer c.Close()
	slots, err := c.Slots(ctx)
	if err != nil {
		return out, err
	}
	for _, s := range slots {
		t := tokenJSON{Slot: s.ID, Reader: s.Description, Label: s.Token.Label, Serial: s.Token.Serial,
			Manufacturer: s.Token.Manufacturer, Model: s.Token.Model, PINPad: s.Token.ProtectedAuthPath,
			PINCountLow: s.Token.UserPINCountLow, PINFinalTry: s.Token.UserPINFinalTry,
			PINLocked: s.Token.UserPINLocked, Certificates: []certJSON{}}
		if m, err := c.Mechanisms(ctx, s.ID); err == nil {
			t.RSAPSS = m.RSAPSS
		}
		certs, err := c.Certificates(ctx, s.ID)
		if err != nil {
			if token.CardChanged(err) {
				continue // the card left while being read
			}
			return out, err
		}
		for i := range certs {
			t.Certificates = append(t.Certificates, describeJSON(lang, &certs[i]))
		}
		out.Tokens = append(out.Tokens, t)
	}
	return out, nil
}

func describeJSON(lang words.Lang, c *token.Certificate) certJSON {
	d := token.Describe(c)
	j := certJSON{ID: hex.EncodeToString(c.ID), Label: c.Label, Subject: d.Subject, SubjectDN: d.SubjectDN,
		Issuer: d.Issuer, IssuerDN: d.IssuerDN, Email: d.Email, Serial: d.Serial, NotBefore: d.NotBefore,
		NotAfter: d.NotAfter, KeyType: d.KeyType, KeyBits: d.KeyBits, KeyUsage: orEmpty(d.KeyUsage),
		ExtKeyUsage: orEmpty(d.ExtKeyUsage), SHA256: d.SHA256, HasPrivateKey: c.HasPrivateKey, Usable: d.Usable,
		Reasons: []reasonJSON{}, ParseError: d.ParseError}
	for _, r := range d.Reasons {
		j.Reasons = append(j.Reasons, reasonJSON{Code: string(r), Text: words.T(lang, "reason."+string(r), nil)})
	}
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
	for _, t := range out.Tokens {
		fmt.Fprintf(env.Stdout, "%s — %s (serial %s)\n", t.Reader, t.Label, t.Serial)
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
			if c.NotAfter != "" {
				fmt.Fprintf(env.Stdout, "      %s\n", words.T(env.Lang, "cert.valid_until", map[string]any{"Date": c.NotAfter[:10]}))
			}
			fmt.Fprintf(env.Stdout, "      %s %d, %s / %s\n", c.KeyType, c.KeyBits, strings.Join(c.KeyUsage, ","),
				strings.Join(c.ExtKeyUsage, ","))
			fmt.Fprintf(env.Stdout, "      SHA-256 %s\n      => %s\n", c.SHA256, verdict)
		}
	}
}
