package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/words"
)

// bridgeReady is the first line of `cardmail bridge --json`, once both listeners are up.
type bridgeReady struct {
	Event        string `json:"event"` // "ready"
	IMAP         string `json:"imap,omitempty"`
	SMTP         string `json:"smtp,omitempty"`
	User         string `json:"user"`
	Password     string `json:"password"`
	LoopbackCert string `json:"loopback_cert,omitempty"` // PEM of the local STARTTLS certificate
}

// bridgeEvent is one later line: a connection, a card event or an error. Never message content or folder names.
type bridgeEvent struct {
	Event    bridge.EventKind `json:"event"`
	Time     string           `json:"time"`
	Protocol string           `json:"protocol,omitempty"`
	Client   string           `json:"client,omitempty"`
	Reader   string           `json:"reader,omitempty"`
	Code     diagnosis.Code   `json:"code,omitempty"`
	Message  string           `json:"message,omitempty"`
	Detail   string           `json:"detail,omitempty"`
	Clients  int              `json:"clients"`
}

// runBridge is `cardmail bridge [target flags] [--listen-imap ADDR] [--listen-smtp ADDR] [--json]`: the account
// served to local mail clients on loopback, upstream through the card, until interrupted. Exit 0 after an
// interruption, 1 when the bridge cannot start (a port taken), 2 for usage errors (a non-loopback address).
func runBridge(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "bridge")
	tf := addTargetFlags(fs, false)
	tf.repeat = 1
	listenIMAP := fs.String("listen-imap", bridge.DefaultIMAPAddr, "local IMAP address (loopback only)")
	listenSMTP := fs.String("listen-smtp", bridge.DefaultSMTPAddr, "local SMTP submission address (loopback only)")
	if st, ok := parse(fs, args); !ok {
		return st
	}
	for flag, addr := range map[string]string{"--listen-imap": *listenIMAP, "--listen-smtp": *listenSMTP} {
		if _, err := bridge.CheckLoopback(addr); err != nil {
			return usageError(env, fmt.Errorf("%w: %s %q: %w", errUsage, flag, addr, err))
		}
	}
	p, err := tf.target()
	if err != nil {
		return usageError(env, err)
	}
	if p.Address == "" {
		return usageError(env, fmt.Errorf("%w: bridge needs --user ADDR (local clients log in with it)", errUsage))
	}
	imapAddr, smtpAddr := *listenIMAP, *listenSMTP
	if p.IMAP.Host == "" {
		imapAddr = ""
	}
	if p.SMTP.Host == "" {
		smtpAddr = ""
	}
	r := tf.start(ctx, env)
	defer r.stop()
	if err := tf.pin(ctx, r, p); err != nil {
		return fail(env, tf.asJSON, err)
	}
	out := &bridgeOutput{w: env.Stdout, lang: env.Lang, json: tf.asJSON}
	b, setup, err := r.accounts.ServeBridge(p, imapAddr, smtpAddr, env.Lang, out.event)
	if err != nil {
		var le *bridge.ListenError
		switch {
		case errors.Is(err, bridge.ErrNotLoopback):
			return usageError(env, err)
		case errors.As(err, &le) && errors.Is(err, bridge.ErrPortInUse):
			msg := words.T(env.Lang, "cli.bridge.port_in_use", map[string]any{"Addr": le.Addr})
			if tf.asJSON {
				_ = json.NewEncoder(env.Stdout).Encode(outcome{Code: "port_in_use", Message: msg, Detail: err.Error()})
			}
			fmt.Fprintln(env.Stderr, msg)
			return ExitFailure
		}
		return fail(env, tf.asJSON, err)
	}
	password, certFile := setup.Password, setup.CertFile
	out.ready(bridgeReady{Event: "ready", IMAP: b.IMAPAddr(), SMTP: b.SMTPAddr(), User: b.User(), Password: password,
		LoopbackCert: certFile})
	<-ctx.Done()
	b.Close()
	return ExitOK
}

// bridgeOutput prints the ready line and the events, one at a time (events arrive from the bridge's goroutines).
type bridgeOutput struct {
	mu   sync.Mutex
	w    io.Writer
	lang words.Lang
	json bool
}

func (o *bridgeOutput) ready(r bridgeReady) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		o.line(r)
		return
	}
	t := func(key string, data map[string]any) string { return words.T(o.lang, key, data) }
	fmt.Fprintln(o.w, t("cli.bridge.ready", map[string]any{"User": r.User}))
	if r.IMAP != "" {
		fmt.Fprintln(o.w, "  "+t("cli.bridge.imap", map[string]any{"Addr": r.IMAP}))
	}
	if r.SMTP != "" {
		fmt.Fprintln(o.w, "  "+t("cli.bridge.smtp", map[string]any{"Addr": r.SMTP}))
	}
	fmt.Fprintln(o.w, "  "+t("cli.bridge.user", map[string]any{"User": r.User}))
	fmt.Fprintln(o.w, "  "+t("cli.bridge.password", map[string]any{"Password": r.Password}))
	fmt.Fprintln(o.w, "  "+t("cli.bridge.cert", map[string]any{"Path": r.LoopbackCert}))
	fmt.Fprintln(o.w, t("cli.bridge.stop", nil))
}

// line prints v as one JSON line; o.mu is held.
func (o *bridgeOutput) line(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(o.w, "%s\n", b)
}

func (o *bridgeOutput) event(ev bridge.Event) {
	line := bridgeEvent{Event: ev.Kind, Time: ev.Time.UTC().Format(time.RFC3339Nano), Protocol: ev.Protocol,
		Client: ev.Client, Reader: ev.Reader, Code: ev.Code, Clients: ev.Clients}
	if ev.Code != "" {
		line.Message = headline(o.lang, ev.Code)
	}
	if ev.Err != nil && ev.Kind != bridge.CardRemoved && ev.Kind != bridge.CardInserted {
		line.Detail = ev.Err.Error()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		o.line(line)
		return
	}
	text := words.T(o.lang, "cli.bridge.event."+string(ev.Kind), map[string]any{"Protocol": ev.Protocol,
		"Client": ev.Client, "Reader": ev.Reader, "Clients": ev.Clients})
	if line.Message != "" {
		text += " — " + line.Message
	}
	fmt.Fprintf(o.w, "%s %s\n", ev.Time.Format("15:04:05"), text)
}
