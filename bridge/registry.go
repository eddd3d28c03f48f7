package bridge

import (
	"errors"
	"sync"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/words"
)

// Registry runs the bridges of the desktop app, one per account (by name), with their settings and passwords in a
// Store. All methods are safe for concurrent use.
type Registry struct {
	dialer *mail.Dialer
	store  *Store

	mu      sync.Mutex
	running map[string]*Bridge
	subs    map[int]func(name string, ev Event)
	subSeq  int
	closed  bool
}

// NewRegistry returns a registry that dials upstream with d and keeps its state in store.
func NewRegistry(d *mail.Dialer, store *Store) *Registry {
	return &Registry{dialer: d, store: store, running: map[string]*Bridge{}, subs: map[int]func(string, Event){}}
}

// Store returns the registry's store.
func (r *Registry) Store() *Store { return r.store }

// ErrRegistryClosed: Start after Close.
var ErrRegistryClosed = errors.New("bridge registry closed")

// Start (re)starts the bridge of account name with set (addresses) and saves set with Enabled true. A running
// bridge of that name is stopped first. Errors: those of Start (*ListenError ...) and of the store.
func (r *Registry) Start(name string, a mail.Account, set Settings, lang words.Lang) (*Bridge, error) {
	r.Stop(name, false)
	pw, err := r.store.Password(a.Address)
	if err != nil {
		return nil, err
	}
	tlsCfg, _, err := r.store.LoopbackTLS()
	if err != nil {
		return nil, err
	}
	b, err := Start(Config{Account: a, Dialer: r.dialer, IMAPAddr: set.IMAP, SMTPAddr: set.SMTP, Password: pw,
		TLS: tlsCfg, Lang: lang, OnEvent: func(ev Event) { r.notify(name, ev) }})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		b.Close()
		return nil, ErrRegistryClosed
	}
	r.running[name] = b
	r.mu.Unlock()
	set.Enabled = true
	if err := r.store.SaveSettings(a.Address, set); err != nil {
		return b, err
	}
	r.notify(name, Event{Kind: "started"})
	return b, nil
}

// Stop stops the bridge of account name (nothing when none runs); with save, its settings are saved as disabled
// (address is read from the running bridge).
func (r *Registry) Stop(name string, save bool) error {
	r.mu.Lock()
	b := r.running[name]
	delete(r.running, name)
	r.mu.Unlock()
	if b == nil {
		return nil
	}
	b.Close()
	r.notify(name, Event{Kind: "stopped"})
	if !save {
		return nil
	}
	set, err := r.store.Settings(b.User())
	if err != nil {
		return err
	}
	set.Enabled = false
	return r.store.SaveSettings(b.User(), set)
}

// Get returns the running bridge of account name, or nil.
func (r *Registry) Get(name string) *Bridge {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[name]
}

// Subscribe calls fn for every event of every bridge (and "started"/"stopped"), from the bridges' goroutines. fn
// must not block. The returned func unsubscribes.
func (r *Registry) Subscribe(fn func(name string, ev Event)) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subSeq++
	id := r.subSeq
	r.subs[id] = fn
	return func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}

func (r *Registry) notify(name string, ev Event) {
	r.mu.Lock()
	fns := make([]func(string, Event), 0, len(r.subs))
	for _, f := range r.subs {
		fns = append(fns, f)
	}
	r.mu.Unlock()
	for _, f := range fns {
		f(name, ev)
	}
}

// Close stops every bridge (their settings stay: enabled bridges start again with the app).
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	bs := make([]*Bridge, 0, len(r.running))
	for _, b := range r.running {
		bs = append(bs, b)
	}
	r.running = map[string]*Bridge{}
	r.mu.Unlock()
	for _, b := range bs {
		b.Close()
	}
	return nil
}

// Setup is what a person needs to set up a mail client for one account's bridge.
type Setup struct {
	Settings Settings
	Password string // the bridge password
	CertFile string // the loopback certificate, for clients that import it
}
