package app

import (
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// EnvModule is the PKCS#11 module the app uses when none is configured (a profile's pkcs11_module and the command
// line's --module come first).
const EnvModule = "CARDMAIL_PKCS11_MODULE"

// CardsConfig configures Cards.
type CardsConfig struct {
	// Module is the default PKCS#11 module; "" means $CARDMAIL_PKCS11_MODULE, then the first known module.
	Module string
	// PINPrompt asks for PINs; LoginOutcome hears of every login's result (see session.Config).
	PINPrompt    session.PINPrompt
	LoginOutcome func(session.PINRequest, error)
	// SignTimeout bounds one signature (see session.Config); 0 means the session's default.
	SignTimeout time.Duration
	// StartAgent starts PKCS#11 agents (tests capture them); nil means the session's default.
	StartAgent func(ctx context.Context, module string) (session.Agent, error)
	// Watch streams reader events; nil means reader.Watch. Tests feed events by hand.
	Watch func(ctx context.Context) <-chan reader.Event
}

// Cards is the app's view of the smart cards: the PC/SC readers, the certificates of the present cards with their
// health, and card events. It keeps one session manager per PKCS#11 module (a profile may name its own module, such
// as the CPS middleware beside OpenSC), all fed by one reader watcher; a manager created late is first told the
// readers and cards already seen. Create it with NewCards, Start it, Close it at exit. Safe for concurrent use.
type Cards struct {
	cfg CardsConfig

	// mu guards the fields below. It is not held while a manager applies an event (a removal waits for agents to exit
	// and connections to close, seconds at worst), so Manager, used from the window, never waits for that.
	mu       sync.Mutex
	managers map[string]*session.Manager
	seen     map[string]reader.Reader // the readers the watcher reported, with their card state
	synced   bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewCards returns the card service; it starts nothing until Start or the first use.
func NewCards(cfg CardsConfig) *Cards {
	if cfg.Module == "" {
		cfg.Module = os.Getenv(EnvModule)
	}
	if cfg.Watch == nil {
		cfg.Watch = reader.Watch
	}
	return &Cards{cfg: cfg, managers: map[string]*session.Manager{}, seen: map[string]reader.Reader{}}
}

// Start watches the readers until ctx ends or Close, applying every event to every session manager in order.
// Call it once.
func (c *Cards) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.cancel, c.done = cancel, make(chan struct{})
	c.mu.Unlock()
	events := c.cfg.Watch(ctx)
	go func() {
		defer close(c.done)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					return
				}
				c.apply(ev)
			}
		}
	}()
}

// apply records ev and hands it to every manager. Only the watcher goroutine calls it, so managers get events in
// order; a manager created meanwhile is told the recorded state, which already includes ev, and is not in the list
// this call hands ev to.
func (c *Cards) apply(ev reader.Event) {
	c.mu.Lock()
	switch ev.Kind {
	case reader.ReaderAdded:
		c.seen[ev.Reader] = reader.Reader{Name: ev.Reader}
	case reader.ReaderRemoved:
		delete(c.seen, ev.Reader)
	case reader.CardInserted, reader.CardReset:
		c.seen[ev.Reader] = reader.Reader{Name: ev.Reader, CardPresent: true, ATR: ev.ATR, EventCount: ev.EventCount}
	case reader.CardRemoved:
		c.seen[ev.Reader] = reader.Reader{Name: ev.Reader, EventCount: ev.EventCount}
	case reader.ServiceDown:
		clear(c.seen)
		c.synced = false
	case reader.Synced:
		c.synced = true
	}
	managers := slices.Collect(maps.Values(c.managers))
	c.mu.Unlock()
	for _, m := range managers {
		m.Apply(ev)
	}
}

// Manager returns the session manager of a PKCS#11 module ("" means the default module), creating it on first use
// and telling it the readers and cards seen so far.
func (c *Cards) Manager(module string) *session.Manager {
	if module == "" {
		module = c.cfg.Module
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.managers[module]; m != nil {
		return m
	}
	m := session.New(session.Config{Module: module, PINPrompt: c.cfg.PINPrompt, LoginOutcome: c.cfg.LoginOutcome,
		SignTimeout: c.cfg.SignTimeout, StartAgent: c.cfg.StartAgent})
	for _, r := range c.seen {
		m.Apply(reader.Event{Kind: reader.ReaderAdded, Reader: r.Name, Time: time.Now()})
		if r.CardPresent {
			m.Apply(reader.Event{Kind: reader.CardInserted, Reader: r.Name, ATR: r.ATR, EventCount: r.EventCount,
				Time: time.Now()})
		}
	}
	if c.synced {
		m.Apply(reader.Event{Kind: reader.Synced, Time: time.Now()})
	}
	c.managers[module] = m
	return m
}

// Close stops the watcher and closes every session manager (their agents exit, their connections close).
func (c *Cards) Close() error {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, m := range c.managers {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

// Readers lists the PC/SC readers and their card state. Errors are reader.List's (reader.ProblemOf and
// reader.Detail put them in words and names), or ctx's error.
func (c *Cards) Readers(ctx context.Context) ([]reader.Reader, error) { return reader.List(ctx) }

// WatchReaders streams reader events until ctx ends (the `readers --watch` command).
func (c *Cards) WatchReaders(ctx context.Context) <-chan reader.Event { return c.cfg.Watch(ctx) }

// Certificates lists the certificates of the present cards (default module) without a PIN, with their verdicts.
func (c *Cards) Certificates(ctx context.Context) ([]session.CardCert, error) {
	return c.Manager("").Certificates(ctx)
}

// Subscribe registers fn for the card events of the default module's manager (see session.Manager.Subscribe).
func (c *Cards) Subscribe(fn func(session.Event)) (unsubscribe func()) {
	return c.Manager("").Subscribe(fn)
}

// ModuleInfo is the default module as its last agent described it (C_GetInfo); ok is false before any listing.
func (c *Cards) ModuleInfo() (token.ModuleInfo, bool) { return c.Manager("").ModuleInfo() }

// Inventory is everything a PKCS#11 module shows without a PIN: the module, and every token with its slot,
// mechanisms and certificates (with their verdicts).
type Inventory struct {
	Module token.ModuleInfo
	Tokens []TokenInventory
}

// TokenInventory is one token of an Inventory.
type TokenInventory struct {
	Slot         token.Slot
	Mechanisms   token.Mechanisms
	Certificates []token.Certificate
}

// Inventory reads every token of module ("" means the default) and its certificates, without a PIN, in an agent of
// its own (the `certs` command: it works without the reader watcher). Errors: the token package's
// (*token.ModuleError for a missing or wrong module, *token.OpError ...).
func (c *Cards) Inventory(ctx context.Context, module string) (*Inventory, error) {
	if module == "" {
		module = c.cfg.Module
	}
	mod, err := token.ResolveModule(module)
	if err != nil {
		return nil, err
	}
	a, err := token.Start(ctx, mod.Path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	inv := &Inventory{Module: a.ModuleInfo()}
	slots, err := a.Slots(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range slots {
		t := TokenInventory{Slot: s}
		if m, err := a.Mechanisms(ctx, s.ID); err == nil {
			t.Mechanisms = m
		}
		certs, err := a.Certificates(ctx, s.ID)
		if err != nil {
			if token.CardChanged(err) {
				continue // the card left while being read
			}
			return nil, err
		}
		t.Certificates = certs
		inv.Tokens = append(inv.Tokens, t)
	}
	return inv, nil
}
