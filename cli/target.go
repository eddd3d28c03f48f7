package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/words"
)

// Environment variables read by check, folders and send-test.
const (
	// EnvPIN holds the card PIN for unattended runs (tests, scripted checks on a locked-down machine). UNSAFE outside
	// tests: the environment of a process can be read by the same user and may end up in crash dumps or logs.
	EnvPIN = "CARDMAIL_PIN"
	// EnvPassword holds the account password for LOGIN/PLAIN, with the same warning as EnvPIN. Never a flag: command
	// lines are visible to every user of the machine.
	EnvPassword = "CARDMAIL_PASSWORD"
	// EnvModule is the PKCS#11 module used when --module is not given (the GUI reads it too).
	EnvModule = "CARDMAIL_PKCS11_MODULE"
)

// errUsage marks a usage error (exit 2); its text goes to stderr.
var errUsage = errors.New("usage")

// ErrNoTerminal: the PIN must be typed but standard input is not a terminal, and CARDMAIL_PIN is not set.
var ErrNoTerminal = errors.New("standard input is not a terminal: cannot ask the PIN without echo (set " + EnvPIN + " for unattended runs)")

// ErrEnvPINRefused: the card refused the PIN of CARDMAIL_PIN earlier in this run; it is not sent again.
var ErrEnvPINRefused = errors.New("the card refused the PIN from " + EnvPIN + "; not sending it again")

// ErrPINMismatch: the confirmation typed on the card's final try differs from the PIN.
var ErrPINMismatch = errors.New("the PIN confirmation differs")

// ErrNoMatchingCertificate: --token/--cert select no certificate on the present cards.
var ErrNoMatchingCertificate = errors.New("no certificate matches --token/--cert")

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// targetFlags are the flags shared by check, folders and send-test (shared/spec/cli-and-diagnosis.md).
type targetFlags struct {
	fs                                                                     *flag.FlagSet
	profile, imap, smtp, security, policy, user, auth, module, token, cert string
	ca                                                                     multiFlag
	asJSON                                                                 bool
	repeat                                                                 int
	interval                                                               time.Duration
	timeout                                                                time.Duration
}

// addTargetFlags registers the target flags on fs; withRepeat adds --repeat and --interval.
func addTargetFlags(fs *flag.FlagSet, withRepeat bool) *targetFlags {
	f := &targetFlags{fs: fs, repeat: 1}
	fs.StringVar(&f.profile, "profile", "", "account profile NAME")
	fs.StringVar(&f.imap, "imap", "", "IMAP server HOST:PORT (port default: 993 implicit, 143 starttls)")
	fs.StringVar(&f.smtp, "smtp", "", "SMTP submission server HOST:PORT (port default: 465 implicit, 587 starttls)")
	fs.StringVar(&f.security, "tls", "", "implicit|starttls (default: starttls for ports 143, 587 and 25, else implicit)")
	fs.Var(&f.ca, "ca", "extra trust anchor FILE (PEM), repeatable")
	fs.StringVar(&f.policy, "tls-policy", string(tlspolicy.Default), "default|mssante")
	fs.StringVar(&f.user, "user", "", "mailbox address ADDR (login name, SMTP sender)")
	fs.StringVar(&f.auth, "auth", string(profile.LoginAuto), "auto|external|login|plain")
	fs.StringVar(&f.module, "module", "", "PKCS#11 module PATH (default: $"+EnvModule+" or the first known module)")
	fs.StringVar(&f.token, "token", "", "use a certificate of the token with this LABEL")
	fs.StringVar(&f.cert, "cert", "", "use the certificate with this SHA256 fingerprint or CKA_ID (hex)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON (one object a line)")
	fs.DurationVar(&f.timeout, "timeout", diagnosis.DefaultTimeout, "timeout of each network step")
	if withRepeat {
		fs.IntVar(&f.repeat, "repeat", 1, "run N times in this process, a fresh connection each time")
		fs.DurationVar(&f.interval, "interval", time.Second, "pause between runs with --repeat")
	}
	return f
}

// profileConflicts are the flags that describe an account: a saved profile already does.
var profileConflicts = []string{"imap", "smtp", "tls", "ca", "user", "auth", "tls-policy"}

// validate checks the flags that do not depend on where the account comes from, with or without --profile.
// Errors wrap errUsage (exit 2).
func (f *targetFlags) validate() error {
	switch {
	case f.repeat < 1:
		return fmt.Errorf("%w: --repeat must be at least 1", errUsage)
	case f.interval < 0:
		return fmt.Errorf("%w: --interval must not be negative", errUsage)
	case f.timeout <= 0:
		return fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	switch profile.Login(f.auth) {
	case profile.LoginAuto, profile.LoginExternal, profile.LoginLogin, profile.LoginPlain:
	default:
		return fmt.Errorf("%w: --auth %q: want auto, external, login or plain", errUsage, f.auth)
	}
	switch profile.Security(f.security) {
	case "", profile.Implicit, profile.StartTLS:
	default:
		return fmt.Errorf("%w: --tls %q: want implicit or starttls", errUsage, f.security)
	}
	if !slices.Contains(tlspolicy.Names, tlspolicy.Name(f.policy)) {
		return fmt.Errorf("%w: --tls-policy %q: want default or mssante", errUsage, f.policy)
	}
	if strings.ContainsAny(f.user, "\r\n<> ") {
		return fmt.Errorf("%w: --user %q", errUsage, f.user)
	}
	if f.profile == "" {
		return nil
	}
	var given []string
	f.fs.Visit(func(fl *flag.Flag) {
		if slices.Contains(profileConflicts, fl.Name) {
			given = append(given, "--"+fl.Name)
		}
	})
	if len(given) > 0 {
		return fmt.Errorf("%w: --profile cannot be combined with %s (the profile says them)", errUsage,
			strings.Join(given, ", "))
	}
	return nil
}

// target is the account the flags describe, as a profile: the one --profile names (with --module overriding its
// module), or a profile built from the target flags and validated like any other (profile.ValidateTarget: a command
// line may leave out the address and one of the servers). Errors wrap errUsage (exit 2).
func (f *targetFlags) target() (*profile.Profile, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.profile == "" {
		return f.targetProfile()
	}
	store, err := profile.NewStore()
	if err != nil {
		return nil, err
	}
	e, err := store.Load(f.profile)
	if err != nil {
		return nil, fmt.Errorf("%w: --profile %q: %w", errUsage, f.profile, err)
	}
	p := e.Profile
	if f.module != "" {
		if p.PKCS11Module, err = filepath.Abs(f.module); err != nil {
			return nil, fmt.Errorf("%w: --module %q: %w", errUsage, f.module, err)
		}
	}
	if err := app.CheckTarget(p); err != nil {
		return nil, fmt.Errorf("%w: --profile %q: %w", errUsage, f.profile, err)
	}
	return p, nil
}

// targetProfile is the profile the target flags describe (never saved).
func (f *targetFlags) targetProfile() (*profile.Profile, error) {
	if f.imap == "" && f.smtp == "" {
		return nil, fmt.Errorf("%w: give --imap HOST:PORT and/or --smtp HOST:PORT", errUsage)
	}
	p := &profile.Profile{Version: profile.Version, Address: f.user, Login: profile.Login(f.auth),
		TLSPolicy: profile.TLSPolicy(f.policy)}
	var err error
	if f.imap != "" {
		if p.IMAP, err = server(f.imap, profile.Security(f.security), profile.ProtocolIMAP); err != nil {
			return nil, fmt.Errorf("%w: --imap: %w", errUsage, err)
		}
	}
	if f.smtp != "" {
		if p.SMTP, err = server(f.smtp, profile.Security(f.security), profile.ProtocolSMTP); err != nil {
			return nil, fmt.Errorf("%w: --smtp: %w", errUsage, err)
		}
	}
	if f.module != "" {
		if p.PKCS11Module, err = filepath.Abs(f.module); err != nil {
			return nil, fmt.Errorf("%w: --module %q: %w", errUsage, f.module, err)
		}
	}
	for _, ca := range f.ca { // a profile names files by absolute path; a command line may be relative
		abs, err := filepath.Abs(ca)
		if err != nil {
			return nil, fmt.Errorf("%w: --ca %q: %w", errUsage, ca, err)
		}
		p.CAFiles = append(p.CAFiles, abs)
	}
	if err := app.CheckTarget(p); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return p, nil
}

// server parses HOST[:PORT] for protocol (profile.ProtocolIMAP or ProtocolSMTP). Without --tls the mode follows
// the port: STARTTLS for the protocol's STARTTLS port (143 or 587) and 25, implicit TLS otherwise; without a port,
// the mode's standard port (profile.StandardPort).
func server(s string, sec profile.Security, protocol string) (profile.Server, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		host, portStr = strings.Trim(s, "[]"), ""
	}
	if host == "" {
		return profile.Server{}, fmt.Errorf("no host in %q", s)
	}
	port := 0
	if portStr != "" {
		if port, err = strconv.Atoi(portStr); err != nil || port <= 0 || port > 65535 {
			return profile.Server{}, fmt.Errorf("bad port in %q", s)
		}
	}
	if sec == "" {
		sec = profile.Implicit
		if port == profile.StandardPort(protocol, profile.StartTLS) || port == 25 {
			sec = profile.StartTLS
		}
	}
	if port == 0 {
		port = profile.StandardPort(protocol, sec)
	}
	return profile.Server{Host: host, Port: port, Security: sec}, nil
}

// cacheDir returns the per-user CRL cache directory; without one it tells the person why no CRL is kept (in plain
// words, on env.Stderr) and returns "" (no cache, never a directory other users share).
func cacheDir(env Env) string {
	dirs, err := app.DefaultDirs()
	if err != nil {
		fmt.Fprintf(env.Stderr, "cardmail: %s\n(%v)\n", words.T(env.Lang, "cache.none", nil), err)
	}
	return dirs.Cache
}

// usageError prints a usage error and returns ExitUsage.
func usageError(env Env, err error) int {
	fmt.Fprintf(env.Stderr, "cardmail: %v\n", err)
	return ExitUsage
}

// runApp is the app of one CLI run: the card service, fed by a live reader watcher (until the watcher has reported
// the present cards, a session manager asks PKCS#11 itself, so a check started at once sees an inserted card), and
// the account service, with the PIN prompt of the terminal or CARDMAIL_PIN (guarded: pinguard.go) and the password
// of CARDMAIL_PASSWORD. Call stop when done.
type runApp struct {
	cards    *app.Cards
	accounts *app.Accounts
}

func (f *targetFlags) start(ctx context.Context, env Env) *runApp {
	guard := newPINGuard()
	cards := app.NewCards(app.CardsConfig{PINPrompt: pinPrompt(env, guard), LoginOutcome: guard.outcome})
	cards.Start(ctx)
	accounts := app.NewAccounts(cards, app.Dirs{Cache: cacheDir(env)}, -1, f.timeout)
	accounts.Password = func(*profile.Profile) string { return os.Getenv(EnvPassword) }
	return &runApp{cards: cards, accounts: accounts}
}

func (r *runApp) stop() {
	_ = r.accounts.Close()
	_ = r.cards.Close()
}

// pin applies --token/--cert to p's certificate. Without either, p keeps its own choice (a saved profile pins the
// certificate chosen in the wizard) or none (the first usable certificate). --cert is a SHA-256 fingerprint (64 hex
// digits, colons ignored) or a CKA_ID in hex; a CKA_ID or --token is resolved on the cards present at the first
// round and then pinned to that certificate's fingerprint (in p and in the flags), so that another person's card
// never serves a later round. A CKA_ID that several present certificates share is a usage error.
func (f *targetFlags) pin(ctx context.Context, r *runApp, p *profile.Profile) error {
	want := strings.ToLower(strings.ReplaceAll(f.cert, ":", ""))
	if f.token == "" && want == "" {
		return nil
	}
	if f.token == "" && len(want) == 64 {
		p.CertSHA256 = want
		return nil
	}
	certs, err := r.cards.Manager(p.PKCS11Module).Certificates(ctx)
	if err != nil {
		return err
	}
	var found []string
	for _, c := range certs {
		if f.token != "" && c.TokenLabel != f.token {
			continue
		}
		fp := c.Fingerprint()
		if want != "" && want != fp && want != strings.ToLower(c.IDHex()) {
			continue
		}
		if want == "" && !c.Verdict.Usable {
			continue
		}
		if !slices.Contains(found, fp) {
			found = append(found, fp)
		}
	}
	if len(found) > 1 && f.token == "" {
		// A CKA_ID is the same on every card of a kind (PIV key 9A is 01 on all of them): it cannot pin a person.
		return fmt.Errorf("%w: --cert %s matches %d certificates on the present cards (%s); "+
			"give the SHA-256 fingerprint of the one to use", errUsage, f.cert, len(found), strings.Join(found, ", "))
	}
	if len(found) == 0 {
		return fmt.Errorf("%w (token %q, cert %q): %w", ErrNoMatchingCertificate, f.token, f.cert,
			session.ErrNoUsableCertificate)
	}
	f.cert, f.token = found[0], "" // pinned from now on
	p.CertSHA256 = found[0]
	return nil
}

// pinPrompt asks the PIN: from CARDMAIL_PIN when set, else on the terminal without echo (env.Stdin must be a
// terminal), showing the tries left and asking a confirmation on the final try. The prompt texts go to env.Stderr.
// The PIN from CARDMAIL_PIN is sent only when guard allows it: never on the card's last tries, never again after
// the card refused a PIN (in this run or an earlier one), so an unattended job cannot lock a card.
func pinPrompt(env Env, guard *pinGuard) session.PINPrompt {
	return func(ctx context.Context, req session.PINRequest) ([]byte, error) {
		if req.PINPad {
			fmt.Fprintln(env.Stderr, words.T(env.Lang, "cli.pin_prompt", map[string]any{"Token": req.TokenLabel, "Reader": req.Reader}))
			return nil, nil
		}
		if pin, ok := os.LookupEnv(EnvPIN); ok {
			if err := guard.check(req); err != nil {
				fmt.Fprintln(env.Stderr, envPINWords(env, err))
				return nil, fmt.Errorf("%w: %w", session.ErrPINCancelled, err)
			}
			return []byte(pin), nil
		}
		f, ok := env.Stdin.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil, fmt.Errorf("%w: %w", session.ErrPINCancelled, ErrNoTerminal)
		}
		if req.TriesLeft >= 0 {
			fmt.Fprintln(env.Stderr, words.T(env.Lang, "cli.tries_left", map[string]any{"Tries": req.TriesLeft}))
		}
		pin, err := readSecret(ctx, env.Stderr, f, words.T(env.Lang, "cli.pin_prompt",
			map[string]any{"Token": req.TokenLabel, "Reader": req.Reader}))
		if err != nil || len(pin) == 0 {
			return nil, fmt.Errorf("%w: %v", session.ErrPINCancelled, err)
		}
		if req.FinalTry {
			again, err := readSecret(ctx, env.Stderr, f, words.T(env.Lang, "cli.final_try", nil))
			if err != nil || len(again) == 0 {
				zero(pin)
				return nil, fmt.Errorf("%w: %v", session.ErrPINCancelled, err)
			}
			same := string(again) == string(pin)
			zero(again)
			if !same {
				zero(pin)
				return nil, fmt.Errorf("%w: %w", session.ErrPINCancelled, ErrPINMismatch)
			}
		}
		return pin, nil
	}
}

// envPINWords explains in the user's language why the PIN from CARDMAIL_PIN was not sent.
func envPINWords(env Env, err error) string {
	var refused *EnvPINRefusedError
	switch {
	case errors.As(err, &refused):
		return words.T(env.Lang, "cli.env_pin_refused_before", map[string]any{"Var": EnvPIN,
			"When": refused.At.Local().Format("2006-01-02 15:04")})
	case errors.Is(err, ErrEnvPINTriesLow):
		return words.T(env.Lang, "cli.env_pin_tries_low", map[string]any{"Var": EnvPIN})
	case errors.Is(err, ErrNoPINMemory):
		return words.T(env.Lang, "cli.env_pin_no_memory", map[string]any{"Var": EnvPIN})
	}
	return words.T(env.Lang, "cli.env_pin_refused", map[string]any{"Var": EnvPIN})
}

// readSecret prints prompt and reads a line without echo; ctx cancels the wait (the read goroutine ends with the
// next line typed).
func readSecret(ctx context.Context, w io.Writer, f *os.File, prompt string) ([]byte, error) {
	fmt.Fprint(w, prompt)
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := term.ReadPassword(int(f.Fd()))
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		fmt.Fprintln(w)
		return r.b, r.err
	case <-ctx.Done():
		fmt.Fprintln(w)
		return nil, ctx.Err()
	}
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// sleepCtx waits d or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
