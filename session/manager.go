package session

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/token"
)

// Agent is what the manager needs from a PKCS#11 agent; *token.Client implements it. Unit tests give fakes.
type Agent interface {
	Slots(ctx context.Context) ([]token.Slot, error)
	Certificates(ctx context.Context, slot uint) ([]token.Certificate, error)
	Mechanisms(ctx context.Context, slot uint) (token.Mechanisms, error)
	TokenInfo(ctx context.Context, slot uint) (token.TokenInfo, error)
	Login(ctx context.Context, slot uint, pin []byte) error
	Sign(ctx context.Context, slot uint, keyID, digest []byte, s token.Scheme) ([]byte, error)
	Close() error
	// Kill ends the agent at once; pending and later calls fail.
	Kill()
	// Done is closed once the agent process has exited.
	Done() <-chan struct{}
}

// Config configures a Manager.
type Config struct {
	// Module is the PKCS#11 module path; "" means the first module token.KnownModules finds.
	Module string
	// PINPrompt asks for PINs. Required for cards that need a login.
	PINPrompt PINPrompt
	// LoginOutcome, when set, is called after every C_Login with the request that was prompted and the login's
	// result (nil, or a *token.PINError for a refused PIN). It is called synchronously and must not block: the CLI
	// uses it to remember refusals across runs.
	LoginOutcome func(req PINRequest, err error)
	// StartAgent starts a PKCS#11 agent for the module; nil means token.StartOptions with SignTimeout.
	StartAgent func(ctx context.Context, module string) (Agent, error)
	// SignTimeout bounds one signature from the moment the agent starts it (a signature waiting for the agent to
	// finish another call does not spend it); past it the agent is killed. 0 means 4 s.
	SignTimeout time.Duration
}

// Stats counts what the manager did, for benchmarks and reports.
type Stats struct {
	AgentsStarted int
	Logins        int
	Signatures    int
	Invalidations int // card generations ended
}

// agentExitWait bounds how long ending a generation waits for a killed agent process to exit.
const agentExitWait = 3 * time.Second

// Manager owns card sessions. Create it with New, feed it reader events with Run, and Close it at exit.
//
// Its state is guarded by mu and split by concern: readers (what the PC/SC watcher reported), cards (the registry
// of cards by identity, with their bindings and generations, cards.go), agents (every live agent process and what
// it works for, agents.go), the listing cache (listing.go) and the subscribers (events.go).
type Manager struct {
	cfg Config

	mu       sync.Mutex
	closed   bool
	watching bool                    // reader events are applied, so presence is known
	readers  map[string]*readerState // by PC/SC reader name, from reader events
	cards    map[cardKey]*card       // by identity
	epoch    uint64                  // source of generation numbers, unique across cards
	// version counts card-side changes of any kind (reader events, card-changed errors); a listing made at one
	// version is stale at the next.
	version uint64
	listing []CardCert
	listVer uint64
	agents  map[Agent]agentUse
	spare   Agent // the last listing agent, reused for a login while version == spareVer
	// spareVer is the version the spare agent listed at.
	spareVer uint64
	refused  map[string]bool  // token serials whose last PIN was refused
	module   token.ModuleInfo // of the last listing agent (zero until one started)
	stats    Stats

	listMu  chan struct{} // one listing agent at a time
	loginMu chan struct{} // one login (PIN prompt) at a time

	events dispatcher
}

// New returns a manager. It starts nothing until used.
func New(cfg Config) *Manager {
	if cfg.SignTimeout == 0 {
		cfg.SignTimeout = 4 * time.Second
	}
	if cfg.StartAgent == nil {
		signTimeout := cfg.SignTimeout
		cfg.StartAgent = func(ctx context.Context, module string) (Agent, error) {
			return token.StartOptions(ctx, module, token.Options{SignTimeout: signTimeout})
		}
	}
	m := &Manager{
		cfg:     cfg,
		readers: map[string]*readerState{},
		cards:   map[cardKey]*card{},
		agents:  map[Agent]agentUse{},
		refused: map[string]bool{},
		listMu:  make(chan struct{}, 1),
		loginMu: make(chan struct{}, 1),
	}
	m.events.init()
	return m
}

// readerState is what the reader events said about one PC/SC reader.
type readerState struct {
	present bool
}

// Run applies reader events (from reader.Watch) until events closes or ctx ends. Once the watcher has reported the
// initial state (reader.Synced) the manager knows which readers hold a card and answers ErrCardAbsent without
// touching PKCS#11. Call it at most once.
func (m *Manager) Run(ctx context.Context, events <-chan reader.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			m.Apply(ev)
		}
	}
}

// Apply acts on one reader event; Run calls it for each event. A removal, reset or disappearance ends the
// generation of every card bound (surely or possibly) to that reader; ServiceDown ends all of them. Apply returns
// once the agents of the ended generations have exited and their tracked connections are closed; subscribers are
// told afterwards, in order.
//
// From the first reader.Synced event (or the first card event, for callers that feed events by hand) on, the
// manager trusts the events for card presence and answers ErrCardAbsent without touching PKCS#11.
func (m *Manager) Apply(ev reader.Event) {
	now := time.Now()
	switch ev.Kind {
	case reader.CardInserted:
		m.readerChanged(ev.Reader, true, false, CardInserted, now)
	case reader.CardRemoved, reader.ReaderRemoved:
		m.readerChanged(ev.Reader, false, ev.Kind == reader.ReaderRemoved, CardRemoved, now)
	case reader.CardReset:
		// A reset or a fast remove+reinsert: whatever was there is gone, and a card is there again.
		m.readerChanged(ev.Reader, false, false, CardRemoved, now)
		m.readerChanged(ev.Reader, true, false, CardInserted, now)
	case reader.ServiceDown:
		m.serviceDown(ev.Err, now)
	case reader.ReaderAdded, reader.ServiceUp:
		m.mu.Lock()
		if ev.Kind == reader.ReaderAdded {
			if m.readers[ev.Reader] == nil {
				m.readers[ev.Reader] = &readerState{}
			}
		}
		m.version++
		m.emit(Event{Kind: ReadersChanged, Reader: ev.Reader, Time: now})
		m.mu.Unlock()
	case reader.Synced:
		m.mu.Lock()
		m.watching = true
		m.mu.Unlock()
	}
}

// Close kills every agent (waiting for their exit), closes tracked connections, tells subscribers, and makes later
// calls fail with ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var doomed doomed
	for _, c := range m.cards {
		if c.live() {
			ended := doomed.endGeneration(m, c)
			doomed.emit(m, Event{Kind: CardRemoved, Reader: c.name(), Generation: ended, Err: ErrClosed, Time: time.Now()})
		}
	}
	for a := range m.agents {
		doomed.agents = append(doomed.agents, a)
	}
	m.spare = nil
	m.mu.Unlock()
	doomed.carryOut(m)
	m.events.close()
	return nil
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// anyCardPresent reports whether, per the reader events seen, some reader holds a card. known is false when no
// watcher feeds the manager (then only PKCS#11 can tell).
func (m *Manager) anyCardPresent() (present, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.watching {
		return false, false
	}
	for _, st := range m.readers {
		if st.present {
			return true, true
		}
	}
	return false, true
}

func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Track is the manager's Track for id (see Manager.Track).
func (id *Identity) Track(c io.Closer) (untrack func()) { return id.m.Track(id, c) }

// Track registers c to be closed when id's card generation ends (card removed or changed, manager closed). If it
// has already ended, c is closed at once. Closing must not block for long: pass the raw network connection (the
// manager waits for closers, up to a bound, before it tells subscribers). The returned func unregisters c without
// closing it; call it when the connection is closed normally.
func (m *Manager) Track(id *Identity, c io.Closer) (untrack func()) {
	m.mu.Lock()
	cd := id.s.card
	if m.closed || !id.s.current() {
		m.mu.Unlock()
		_ = c.Close()
		return func() {}
	}
	cd.trackSeq++
	n := cd.trackSeq
	if cd.tracked == nil {
		cd.tracked = map[int]io.Closer{}
	}
	cd.tracked[n] = c
	gen := cd.gen
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if cd.gen == gen {
			delete(cd.tracked, n)
		}
		m.mu.Unlock()
	}
}
