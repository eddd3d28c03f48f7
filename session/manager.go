// Package session is CardMail's session manager: it binds everything that touches a card (PKCS#11 agent, login,
// key handles, TLS session caches, authenticated connections) to one *card generation* and throws all of it away when
// the card changes, so that unplugging and plugging a card back never needs a restart.
//
// A card is known by its PKCS#11 slot description, which OpenSC and the CPS middleware set to the PC/SC reader name.
// Its generation increases on every reader event for that reader (insertion, removal, reset, event-counter change,
// reader or PC/SC service gone) and on every PKCS#11 error that says the card changed (token.CardChanged). Nothing
// from an old generation is reachable afterwards: its agent process is killed, its signers fail with ErrCardRemoved,
// its TLS session cache is emptied and the connections tracked for it are closed.
//
// The PIN is asked through the PINPrompt callback, at most once per card generation, and never retried after the
// card refused it.
//
// All methods of Manager are safe for concurrent use.
package session

import (
	"cmp"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
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
	Kill()
}

// PINRequest describes the card whose PIN is asked. TriesLeft is -1 when the token does not say.
type PINRequest struct {
	Reader      string
	TokenLabel  string
	TokenSerial string
	TriesLeft   int
	CountLow    bool // a previous PIN was wrong
	FinalTry    bool // a wrong PIN now locks the card: the prompt must warn and ask for confirmation
	PINPad      bool // the reader has a PIN pad: the prompt only informs and returns a nil PIN
	// Refused: the last PIN given for this card was refused. A prompt that does not ask a person (a PIN from the
	// environment, a script) must not answer again: repeating a refused PIN is how cards get locked.
	Refused bool
}

// PINPrompt asks the person for the PIN. It returns the PIN (the manager zeroes the slice after the login), nil
// when PINPad is set, or an error wrapping ErrPINCancelled when the person cancels. It must honour ctx.
type PINPrompt func(ctx context.Context, req PINRequest) ([]byte, error)

// Config configures a Manager.
type Config struct {
	// Module is the PKCS#11 module path; "" means the first module token.KnownModules finds.
	Module string
	// PINPrompt asks for PINs. Required for cards that need a login.
	PINPrompt PINPrompt
	// StartAgent starts a PKCS#11 agent for the module; nil means token.Start.
	StartAgent func(ctx context.Context, module string) (Agent, error)
	// SignTimeout bounds one signature (the agent is killed past it); 0 means 4 s.
	SignTimeout time.Duration
}

// EventKind says what happened to a card or the PC/SC service.
type EventKind int

// Event kinds delivered to subscribers.
const (
	CardInserted   EventKind = iota + 1 // a card appeared in Reader
	CardRemoved                         // the card in Reader left or changed: everything bound to it is gone
	ReadersChanged                      // a reader appeared or vanished, or the PC/SC service came back
	ServiceDown                         // the PC/SC service stopped: every card session is gone
	LoggedIn                            // a login succeeded on the card in Reader
	SessionEnded                        // a token error ended the card session; the card is still there (new PIN needed)
)

var eventNames = map[EventKind]string{CardInserted: "card_inserted", CardRemoved: "card_removed",
	ReadersChanged: "readers_changed", ServiceDown: "service_down", LoggedIn: "logged_in",
	SessionEnded: "session_ended"}

func (k EventKind) String() string {
	return cmp.Or(eventNames[k], fmt.Sprintf("EventKind(%d)", int(k)))
}

// Event is delivered to subscribers after the manager has acted on it (for CardRemoved: after the agent was killed,
// caches were dropped and tracked connections were told to close).
type Event struct {
	Kind       EventKind
	Reader     string
	Generation uint64 // the generation that ended (CardRemoved) or began (others)
	Err        error  // the PKCS#11 error that revealed a change, or the PC/SC error for ServiceDown
	Time       time.Time
}

// CardCert is a certificate found on a present card, with the reader (slot description) that holds it.
type CardCert struct {
	token.Certificate
	Reader string
}

// Selection says which certificate to log in with.
type Selection struct {
	// CertSHA256 is the hex SHA-256 of the certificate (case and colons ignored); "" selects the first usable
	// certificate of the present cards in reader-name order.
	CertSHA256 string
}

// Stats counts what the manager did, for benchmarks and reports.
type Stats struct {
	AgentsStarted int
	Logins        int
	Signatures    int
	Invalidations int
}

// Manager owns card sessions. Create it with New, feed it reader events with Run, and Close it at exit.
type Manager struct {
	cfg Config

	mu       sync.Mutex
	closed   bool
	watching bool                    // reader events are applied, so presence is known
	readers  map[string]*readerState // by reader name / slot description
	version  uint64                  // bumped on every card-side change; keys the listing cache
	listing  []CardCert
	listVer  uint64
	sessions map[string]*cardSession
	caches   map[string]*sessionCache
	tracked  map[string]map[int]io.Closer
	trackSeq int
	subs     map[int]func(Event)
	subSeq   int
	stats    Stats
	spare    Agent // the last listing agent, reused for a login while version == spareVer
	spareVer uint64
	listMu   chan struct{} // one listing agent at a time
	loginMu  chan struct{} // one login (PIN prompt) at a time
	// agentsAll holds every live agent with the reader it works for: "" while it lists all cards (or waits as the
	// spare), the reader name while it logs in or serves a session. A card event kills the agents of that reader
	// and every "" agent, even in the middle of a call (a PKCS#11 call can hang forever on a vanished card).
	agentsAll map[Agent]string
	refused   map[string]bool // token serials whose last PIN was refused
}

type readerState struct {
	present bool
	gen     uint64
}

// cardSession is one logged-in agent for one card generation.
type cardSession struct {
	reader string
	gen    uint64
	agent  Agent
	slot   uint
	mechs  token.Mechanisms
}

// New returns a manager. It starts nothing until used.
func New(cfg Config) *Manager {
	if cfg.SignTimeout == 0 {
		cfg.SignTimeout = 4 * time.Second
	}
	if cfg.StartAgent == nil {
		cfg.StartAgent = func(ctx context.Context, module string) (Agent, error) { return token.Start(ctx, module) }
	}
	return &Manager{
		cfg:       cfg,
		readers:   map[string]*readerState{},
		sessions:  map[string]*cardSession{},
		caches:    map[string]*sessionCache{},
		tracked:   map[string]map[int]io.Closer{},
		subs:      map[int]func(Event){},
		listMu:    make(chan struct{}, 1),
		loginMu:   make(chan struct{}, 1),
		agentsAll: map[Agent]string{},
		refused:   map[string]bool{},
	}
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

// Apply acts on one reader event; Run calls it for each event. Any card event of a reader ends that reader's card
// generation; ServiceDown ends all of them.
//
// From the first reader.Synced event (or the first card event, for callers that feed events by hand) on, the
// manager trusts the events for card presence and answers ErrCardAbsent without touching PKCS#11.
func (m *Manager) Apply(ev reader.Event) {
	if ev.Kind != reader.ReaderAdded && ev.Kind != reader.ServiceUp {
		m.mu.Lock()
		m.watching = true
		m.mu.Unlock()
	}
	switch ev.Kind {
	case reader.CardInserted:
		m.invalidate(ev.Reader, nil, CardInserted, present)
	case reader.CardRemoved, reader.CardReset, reader.ReaderRemoved:
		m.invalidate(ev.Reader, nil, CardRemoved, absent)
		if ev.Kind == reader.CardReset {
			// A reset or a fast remove+reinsert: the card is there again, as a new generation.
			m.invalidate(ev.Reader, nil, CardInserted, present)
		}
	case reader.ServiceDown:
		m.mu.Lock()
		names := make([]string, 0, len(m.readers)+len(m.sessions))
		for n := range m.readers {
			names = append(names, n)
		}
		for n := range m.sessions {
			names = append(names, n)
		}
		m.mu.Unlock()
		for _, n := range names {
			m.invalidate(n, ev.Err, CardRemoved, absent)
		}
		m.notify(Event{Kind: ServiceDown, Err: ev.Err, Time: time.Now()})
	case reader.ReaderAdded, reader.ServiceUp:
		m.mu.Lock()
		m.version++
		m.mu.Unlock()
		m.notify(Event{Kind: ReadersChanged, Reader: ev.Reader, Time: time.Now()})
	}
}

// presence is what an invalidation learns about the reader: only reader events know; PKCS#11 errors leave it.
type presence int

const (
	unchanged presence = iota
	present
	absent
)

// invalidate ends the current generation of reader's card: kills its agent, drops caches, closes tracked
// connections, then tells subscribers with kind. p records whether a card is now in the reader.
func (m *Manager) invalidate(name string, cause error, kind EventKind, p presence) {
	m.mu.Lock()
	st := m.readers[name]
	if st == nil {
		st = &readerState{}
		m.readers[name] = st
	}
	ended := st.gen
	st.gen++
	if p != unchanged {
		st.present = p == present
	}
	m.version++
	m.listing = nil
	delete(m.sessions, name)
	m.spare = nil
	var doomed []Agent // the session's, the spare, and any agent listing or logging in for this card right now
	for a, key := range m.agentsAll {
		if key == name || key == "" {
			doomed = append(doomed, a)
		}
	}
	delete(m.caches, name)
	closers := m.tracked[name]
	delete(m.tracked, name)
	m.stats.Invalidations++
	m.mu.Unlock()

	for _, a := range doomed {
		m.dropAgent(a)
	}
	for _, c := range closers {
		go c.Close() // a TLS close_notify may block on a dead peer; never block the event path on it
	}
	gen := ended
	if kind == CardInserted {
		gen = ended + 1
	}
	m.notify(Event{Kind: kind, Reader: name, Generation: gen, Err: cause, Time: time.Now()})
}

func (m *Manager) dropAgent(a Agent) {
	a.Kill()
	m.mu.Lock()
	delete(m.agentsAll, a)
	m.mu.Unlock()
}

// Subscribe registers fn to be called, from the manager's goroutine, after each event. fn must not block (the GUI
// hands the event to its UI goroutine). The returned func unsubscribes.
func (m *Manager) Subscribe(fn func(Event)) (unsubscribe func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subSeq++
	id := m.subSeq
	m.subs[id] = fn
	return func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}
}

func (m *Manager) notify(ev Event) {
	m.mu.Lock()
	fns := make([]func(Event), 0, len(m.subs))
	for _, f := range m.subs {
		fns = append(fns, f)
	}
	m.mu.Unlock()
	for _, f := range fns {
		f(ev)
	}
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Close kills every agent, closes tracked connections and makes later calls fail with ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	names := make([]string, 0, len(m.sessions))
	for n := range m.sessions {
		names = append(names, n)
	}
	agents := make([]Agent, 0, len(m.agentsAll))
	for a := range m.agentsAll {
		agents = append(agents, a)
	}
	m.mu.Unlock()
	for _, n := range names {
		m.invalidate(n, ErrClosed, CardRemoved, unchanged)
	}
	for _, a := range agents {
		m.dropAgent(a)
	}
	return nil
}

func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) startAgent(ctx context.Context) (Agent, error) {
	a, err := m.cfg.StartAgent(ctx, m.cfg.Module)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.stats.AgentsStarted++
	closed := m.closed
	if !closed {
		m.agentsAll[a] = ""
	}
	m.mu.Unlock()
	if closed {
		a.Kill()
		return nil, ErrClosed
	}
	return a, nil
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

// Certificates lists the certificates of the present cards without a PIN, with their verdicts, sorted by reader
// then usability. The list is cached until the next card event. It returns ErrCardAbsent when no card is present,
// and the token package's errors (*token.ModuleError, ...) when the module cannot be used.
func (m *Manager) Certificates(ctx context.Context) ([]CardCert, error) {
	if present, known := m.anyCardPresent(); known && !present {
		return nil, &CardError{Err: ErrCardAbsent}
	}
	if err := acquire(ctx, m.listMu); err != nil {
		return nil, err
	}
	defer func() { <-m.listMu }()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if m.listing != nil && m.listVer == m.version {
		out := slices.Clone(m.listing)
		m.mu.Unlock()
		return out, nil
	}
	ver := m.version
	m.mu.Unlock()

	certs, err := m.list(ctx)
	for retry := 0; err != nil && errors.Is(err, token.ErrAgentKilled) && ctx.Err() == nil && retry < 2; retry++ {
		// A card event killed the listing agent mid-call: list the new state (or learn that no card is left).
		if present, known := m.anyCardPresent(); known && !present {
			return nil, &CardError{Err: ErrCardAbsent}
		}
		m.mu.Lock()
		ver = m.version
		m.mu.Unlock()
		certs, err = m.list(ctx)
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.version == ver {
		m.listing, m.listVer = certs, ver
	}
	m.mu.Unlock()
	if len(certs) == 0 {
		return nil, &CardError{Err: ErrCardAbsent}
	}
	return slices.Clone(certs), nil
}

// list runs a short-lived agent that lists every slot's certificates.
// The agent is kept as the spare for the next login while no card event happens (it saves a process start and a
// C_Initialize on the way from card insertion to the first handshake).
func (m *Manager) list(ctx context.Context) ([]CardCert, error) {
	m.mu.Lock()
	ver := m.version
	m.mu.Unlock()
	a, err := m.startAgent(ctx)
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if keep {
			m.setSpare(a, ver)
			return
		}
		_ = a.Close()
		m.mu.Lock()
		delete(m.agentsAll, a)
		m.mu.Unlock()
	}()
	slots, err := a.Slots(ctx)
	if err != nil {
		return nil, err
	}
	var out []CardCert
	for _, s := range slots {
		certs, err := a.Certificates(ctx, s.ID)
		if err != nil {
			if token.CardChanged(err) {
				continue // the card left while we listed it: it is absent, not an error
			}
			return nil, err
		}
		for _, c := range certs {
			out = append(out, CardCert{Certificate: c, Reader: s.Description})
		}
	}
	keep = len(out) > 0
	slices.SortStableFunc(out, func(a, b CardCert) int {
		if c := strings.Compare(a.Reader, b.Reader); c != 0 {
			return c
		}
		if a.Verdict.Usable != b.Verdict.Usable {
			if a.Verdict.Usable {
				return -1
			}
			return 1
		}
		return 0
	})
	return out, nil
}

// setSpare keeps a as the spare agent if no card event happened since version ver; otherwise it closes it.
func (m *Manager) setSpare(a Agent, ver uint64) {
	m.mu.Lock()
	old := m.spare
	m.spare, m.spareVer = nil, 0
	if !m.closed && m.version == ver {
		m.spare, m.spareVer = a, ver
		a = nil
	}
	m.mu.Unlock()
	for _, x := range []Agent{old, a} {
		if x != nil {
			m.dropAgent(x)
		}
	}
}

// takeAgent returns the spare agent when no card event happened since it listed the cards, else a new agent.
func (m *Manager) takeAgent(ctx context.Context) (Agent, error) {
	m.mu.Lock()
	a := m.spare
	fresh := a != nil && m.spareVer == m.version
	m.spare = nil
	m.mu.Unlock()
	if fresh {
		return a, nil
	}
	if a != nil {
		m.dropAgent(a)
	}
	return m.startAgent(ctx)
}

// normalizeFingerprint lowercases a hex fingerprint and drops colons and spaces.
func normalizeFingerprint(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(s))
}

// choose applies a selection to a listing.
func choose(certs []CardCert, sel Selection) (CardCert, error) {
	want := normalizeFingerprint(sel.CertSHA256)
	for _, c := range certs {
		if want != "" && hex.EncodeToString(c.SHA256[:]) != want {
			continue
		}
		if c.Verdict.Usable {
			return c, nil
		}
		if want != "" {
			return CardCert{}, &CardError{Reader: c.Reader, Err: fmt.Errorf("%w: %s is not usable: %v",
				ErrNoUsableCertificate, want, c.Verdict.Reasons)}
		}
	}
	return CardCert{}, &CardError{Err: ErrNoUsableCertificate}
}

// Identity is a certificate with a signer bound to one card generation. Once that generation ends, Sign fails with
// ErrCardRemoved; resolve a new Identity instead.
type Identity struct {
	Cert       CardCert
	Reader     string
	Generation uint64
	Mechanisms token.Mechanisms
	m          *Manager
	s          *cardSession
}

// Current reports whether the identity's card generation is still the current one.
func (id *Identity) Current() bool { return id.m.current(id.s) }

// Signer returns a crypto.Signer that signs with the card. Every Sign checks the generation first and has the
// manager's SignTimeout; a card-changed PKCS#11 error or a hung agent ends the generation and returns a *CardError
// wrapping ErrCardRemoved or token.ErrTokenUnresponsive.
func (id *Identity) Signer() crypto.Signer { return &cardSigner{id: id} }

func (m *Manager) current(s *cardSession) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.readers[s.reader]
	return !m.closed && m.sessions[s.reader] == s && st != nil && st.gen == s.gen
}

// Identity resolves the selected certificate on the present cards and makes sure its card is logged in (asking the
// PIN at most once per card generation). Errors: *CardError wrapping ErrCardAbsent, ErrNoUsableCertificate,
// ErrCardRemoved or ErrPINCancelled; *token.PINError for a refused PIN (never retried); token errors for module
// trouble.
func (m *Manager) Identity(ctx context.Context, sel Selection) (*Identity, error) {
	certs, err := m.Certificates(ctx)
	if err != nil {
		return nil, err
	}
	c, err := choose(certs, sel)
	if err != nil {
		return nil, err
	}
	s, err := m.session(ctx, c)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: c, Reader: c.Reader, Generation: s.gen, Mechanisms: s.mechs, m: m, s: s}, nil
}

// session returns the logged-in session of c's card, logging in if the current generation has none.
func (m *Manager) session(ctx context.Context, c CardCert) (*cardSession, error) {
	if s := m.liveSession(c.Reader); s != nil {
		return s, nil
	}
	if err := acquire(ctx, m.loginMu); err != nil {
		return nil, err
	}
	defer func() { <-m.loginMu }()
	if s := m.liveSession(c.Reader); s != nil { // another caller logged in while we waited
		return s, nil
	}

	m.mu.Lock()
	st := m.readers[c.Reader]
	if st == nil {
		st = &readerState{present: true}
		m.readers[c.Reader] = st
	}
	gen := st.gen
	m.mu.Unlock()

	a, err := m.takeAgent(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if _, live := m.agentsAll[a]; live {
		m.agentsAll[a] = c.Reader // from now on a card event of this reader kills it
	}
	m.mu.Unlock()
	s, err := m.login(ctx, a, c, gen)
	if err != nil {
		m.dropAgent(a)
		if errors.Is(err, token.ErrAgentKilled) && ctx.Err() == nil {
			// Killed by a card event during the login: the card changed; the event already ended the generation.
			return nil, &CardError{Reader: c.Reader, Generation: gen, Err: fmt.Errorf("%w: %w", ErrCardRemoved, err)}
		}
		if token.CardChanged(err) {
			m.invalidate(c.Reader, err, CardRemoved, unchanged)
			return nil, &CardError{Reader: c.Reader, Generation: gen, Err: fmt.Errorf("%w: %w", ErrCardRemoved, err)}
		}
		return nil, err
	}
	m.mu.Lock()
	st = m.readers[c.Reader]
	if m.closed || st == nil || st.gen != gen {
		m.mu.Unlock()
		m.dropAgent(a)
		return nil, &CardError{Reader: c.Reader, Generation: gen, Err: ErrCardRemoved}
	}
	m.sessions[c.Reader] = s
	m.stats.Logins++
	m.mu.Unlock()
	m.notify(Event{Kind: LoggedIn, Reader: c.Reader, Generation: gen, Time: time.Now()})
	return s, nil
}

func (m *Manager) liveSession(reader string) *cardSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[reader]
	if s == nil || m.readers[reader] == nil || m.readers[reader].gen != s.gen {
		return nil
	}
	return s
}

// login finds c's slot in a fresh agent, asks the PIN and logs in once.
func (m *Manager) login(ctx context.Context, a Agent, c CardCert, gen uint64) (*cardSession, error) {
	slots, err := a.Slots(ctx)
	if err != nil {
		return nil, err
	}
	var slot *token.Slot
	for i := range slots {
		if slots[i].Description == c.Reader && slots[i].Token.Serial == c.TokenSerial {
			slot = &slots[i]
			break
		}
	}
	if slot == nil {
		return nil, &CardError{Reader: c.Reader, Generation: gen, Err: ErrCardRemoved}
	}
	mechs, err := a.Mechanisms(ctx, slot.ID)
	if err != nil {
		return nil, err
	}
	info, err := a.TokenInfo(ctx, slot.ID)
	if err != nil {
		return nil, err
	}
	s := &cardSession{reader: c.Reader, gen: gen, agent: a, slot: slot.ID, mechs: mechs}
	if !info.LoginRequired {
		return s, nil
	}
	if info.UserPINLocked {
		return nil, &token.PINError{Reason: token.PINLocked, TriesLeft: 0}
	}
	if m.cfg.PINPrompt == nil {
		return nil, &CardError{Reader: c.Reader, Generation: gen, Err: fmt.Errorf("%w: no PIN prompt configured", ErrPINCancelled)}
	}
	m.mu.Lock()
	refused := m.refused[info.Serial]
	m.mu.Unlock()
	req := PINRequest{Reader: c.Reader, TokenLabel: info.Label, TokenSerial: info.Serial, TriesLeft: -1,
		CountLow: info.UserPINCountLow, FinalTry: info.UserPINFinalTry, PINPad: info.ProtectedAuthPath,
		Refused: refused}
	if info.UserPINFinalTry {
		req.TriesLeft = 1
	}
	pin, err := m.cfg.PINPrompt(ctx, req)
	if err != nil {
		if errors.Is(err, ErrPINCancelled) || ctx.Err() != nil {
			return nil, &CardError{Reader: c.Reader, Generation: gen, Err: fmt.Errorf("%w: %w", ErrPINCancelled, err)}
		}
		return nil, err
	}
	if pin == nil && !info.ProtectedAuthPath {
		return nil, &CardError{Reader: c.Reader, Generation: gen, Err: ErrPINCancelled}
	}
	err = a.Login(ctx, slot.ID, pin) // the agent client zeroes pin; zero again in case a fake does not
	clear(pin)
	var pinErr *token.PINError
	m.mu.Lock()
	switch {
	case errors.As(err, &pinErr):
		m.refused[info.Serial] = true
	case err == nil:
		delete(m.refused, info.Serial)
	}
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// cardSigner forwards signatures to the identity's agent. It implements crypto.Signer.
type cardSigner struct {
	id     *Identity
	record *Record // set by the TLS hook to capture the scheme and the error crypto/tls flattens
}

func (cs *cardSigner) Public() crypto.PublicKey {
	if c := cs.id.Cert.Cert; c != nil {
		return c.PublicKey
	}
	return nil
}

func (cs *cardSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	id := cs.id
	m := id.m
	sig, err := cs.sign(digest, opts)
	if cs.record != nil {
		cs.record.signed(opts, err)
	}
	if err == nil {
		m.mu.Lock()
		m.stats.Signatures++
		m.mu.Unlock()
	}
	return sig, err
}

func (cs *cardSigner) sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	id := cs.id
	m := id.m
	if !m.current(id.s) {
		return nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: ErrCardRemoved}
	}
	scheme := token.SchemeFor(id.Cert.KeyType, opts)
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.SignTimeout)
	defer cancel()
	sig, err := id.s.agent.Sign(ctx, id.s.slot, id.Cert.ID, digest, scheme)
	if err == nil {
		return sig, nil
	}
	var pinErr *token.PINError
	if errors.As(err, &pinErr) || errors.Is(err, token.ErrNoSuchKey) {
		return nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: err}
	}
	// Any other failure leaves the token session in an unknown state: end the generation. CKR_GENERAL_ERROR or a
	// hung agent is often the card leaving mid-command before pcscd noticed (it polls every 400 ms), so wait briefly
	// for the reader to confirm before calling it a removal.
	wasCurrent := m.current(id.s)
	removed := token.CardChanged(err) || !wasCurrent || m.awaitAbsent(id.Reader, removalGrace)
	if wasCurrent {
		kind := SessionEnded
		if removed {
			kind = CardRemoved
		}
		m.invalidate(id.Reader, err, kind, unchanged)
	}
	if removed {
		err = fmt.Errorf("%w: %w", ErrCardRemoved, err)
	}
	return nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: err}
}

// removalGrace is how long a failed signature waits for the reader to report the card gone (pcscd polls every
// 400 ms).
const removalGrace = 900 * time.Millisecond

// awaitAbsent waits up to d for the reader events to show no card in name. Without reader events it returns false
// at once.
func (m *Manager) awaitAbsent(name string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		m.mu.Lock()
		watching := m.watching
		st := m.readers[name]
		gone := st == nil || !st.present
		m.mu.Unlock()
		if !watching {
			return false
		}
		if gone {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Track registers c to be closed when id's card generation ends (card removed or changed, manager closed). If it
// has already ended, c is closed at once. The returned func unregisters c without closing it; call it when the
// connection is closed normally.
func (m *Manager) Track(id *Identity, c io.Closer) (untrack func()) {
	m.mu.Lock()
	if !(m.sessions[id.Reader] == id.s && !m.closed) {
		m.mu.Unlock()
		_ = c.Close()
		return func() {}
	}
	m.trackSeq++
	n := m.trackSeq
	if m.tracked[id.Reader] == nil {
		m.tracked[id.Reader] = map[int]io.Closer{}
	}
	m.tracked[id.Reader][n] = c
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if t := m.tracked[id.Reader]; t != nil {
			delete(t, n)
		}
		m.mu.Unlock()
	}
}
