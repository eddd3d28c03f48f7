package session

import (
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cardmail/cardmail/token"
)

// slotDescriptionLen is the size of CK_SLOT_INFO.slotDescription (PKCS#11 v2.40 §3.2): module copies of longer
// reader names are cut there.
const slotDescriptionLen = 64

// cardKey identifies a card by its token: the token serial, or, for tokens that report none, the label and the slot
// description.
type cardKey string

func keyOf(desc string, ti token.TokenInfo) cardKey {
	if ti.Serial != "" {
		return cardKey("serial:" + ti.Serial)
	}
	return cardKey("label:" + ti.Label + "\x00" + desc)
}

// card is what the manager knows of one card across its generations. Fields are guarded by Manager.mu.
//
// Invariant: session, cache and tracked belong to generation gen; ending a generation (endGeneration) bumps gen and
// hands them over for disposal in one step under the lock, so nothing of an ended generation stays reachable.
type card struct {
	key  cardKey
	desc string // the PKCS#11 slot description it was last listed under
	// readers are the PC/SC readers that may hold the card; nil means unknown (every reader concerns it).
	readers []string
	gen     uint64
	session *cardSession  // the logged-in agent of generation gen, or nil
	cache   *sessionCache // the TLS sessions of generation gen, or nil
	tracked map[int]io.Closer
	// trackSeq numbers tracked connections.
	trackSeq int
	// loginAgent is the agent logging in for generation gen, or nil; a card event kills it.
	loginAgent Agent
}

// live reports whether the card has anything bound to its current generation.
func (c *card) live() bool {
	return c.session != nil || c.cache != nil || len(c.tracked) > 0 || c.loginAgent != nil
}

// concerns reports whether an event of reader may be about c: c is bound to it, or c's reader is unknown.
func (c *card) concerns(reader string) bool {
	return c.readers == nil || slices.Contains(c.readers, reader)
}

// name is how errors and events name the card: its reader when exactly one is known, else the slot description.
func (c *card) name() string {
	if len(c.readers) == 1 {
		return c.readers[0]
	}
	return c.desc
}

// cardSession is one logged-in agent for one card generation.
type cardSession struct {
	card  *card
	gen   uint64
	agent Agent
	slot  uint
	mechs token.Mechanisms
	m     *Manager
}

// current reports whether s still serves its card's generation. Callers hold m.mu.
func (s *cardSession) current() bool {
	return !s.m.closed && s.card.session == s && s.card.gen == s.gen
}

// bindings returns the PC/SC readers whose names the slot description desc may stand for: the readers whose name
// equals desc, or whose name cut to slotDescriptionLen bytes equals it (both without trailing blanks and NULs, the
// padding PKCS#11 uses). nil means no known reader matches: the binding is unknown.
func bindings(desc string, readers []string) []string {
	d := trimPadding(desc)
	if d == "" {
		return nil
	}
	var out []string
	for _, r := range readers {
		cut := r
		if len(cut) > slotDescriptionLen {
			cut = cut[:slotDescriptionLen]
		}
		if trimPadding(r) == d || trimPadding(cut) == d {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

func trimPadding(s string) string { return strings.TrimRight(s, " \x00") }

// registerCard records a listed card under its identity and returns it with its current generation. A card seen
// under a new binding (moved to another reader) starts a new generation. Callers hold m.mu.
func (m *Manager) registerCard(d *doomed, desc string, ti token.TokenInfo, now time.Time) *card {
	key := keyOf(desc, ti)
	names := make([]string, 0, len(m.readers))
	for n := range m.readers {
		names = append(names, n)
	}
	binding := bindings(desc, names)
	c := m.cards[key]
	if c == nil {
		m.epoch++
		c = &card{key: key, desc: desc, readers: binding, gen: m.epoch}
		m.cards[key] = c
		return c
	}
	if c.desc != desc || !slices.Equal(c.readers, binding) {
		if c.live() {
			ended := d.endGeneration(m, c)
			d.emit(m, Event{Kind: CardRemoved, Reader: c.name(), Generation: ended, Time: now})
		}
		c.desc, c.readers = desc, binding
	}
	return c
}

// doomed collects what ending generations leaves to dispose of outside the lock: agents to kill and wait for, and
// connections to close. The events that say so are queued in order under the lock (emit) but held back by gate
// until carryOut has disposed of everything, so that subscribers never hear of a removal before its agents have
// exited and its connections are closed. carryOut must run before the caller returns.
type doomed struct {
	agents  []Agent
	closers []io.Closer
	gate    chan struct{} // closed by carryOut; nil until an event was emitted
}

// emit queues ev for the subscribers, to be delivered once carryOut is done. Callers hold m.mu.
func (d *doomed) emit(m *Manager, ev Event) {
	if d.gate == nil {
		d.gate = make(chan struct{})
	}
	m.events.post(ev, d.gate)
}

// endGeneration ends c's current generation and returns its number: a new generation number, its session agent and
// login agent doomed, its TLS session cache dropped, its tracked connections doomed. The caller emits the event that
// says why. Callers hold m.mu.
func (d *doomed) endGeneration(m *Manager, c *card) (ended uint64) {
	ended = c.gen
	m.epoch++
	c.gen = m.epoch
	if c.session != nil {
		d.agents = append(d.agents, c.session.agent)
		c.session = nil
	}
	if c.loginAgent != nil {
		d.agents = append(d.agents, c.loginAgent)
		c.loginAgent = nil
	}
	c.cache = nil
	for _, cl := range c.tracked {
		d.closers = append(d.closers, cl)
	}
	c.tracked = nil
	m.stats.Invalidations++
	return ended
}

// staleListings makes every listing stale and dooms the agents that list cards or wait as the spare (their view of
// the cards may be wrong now, and a PKCS#11 call on a vanished card can hang forever). Callers hold m.mu.
func (d *doomed) staleListings(m *Manager) {
	m.version++
	m.listing = nil
	if m.spare != nil {
		d.agents = append(d.agents, m.spare)
		m.spare = nil
	}
	for a, use := range m.agents {
		if use.listing {
			d.agents = append(d.agents, a)
		}
	}
}

// carryOut kills the doomed agents and waits until they have exited (each bounded by agentExitWait), and closes
// the doomed connections (waiting for each up to the same bound). It runs without m.mu.
func (d *doomed) carryOut(m *Manager) {
	var wg sync.WaitGroup
	for _, a := range d.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.dropAgent(a)
		}()
	}
	for _, c := range d.closers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { _ = c.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(agentExitWait):
			}
		}()
	}
	wg.Wait()
	if d.gate != nil {
		close(d.gate)
	}
}

// readerChanged applies a card event of reader: its presence, stale listings, and, for a removal, the end of the
// generation of every card the reader concerns. gone says the reader itself disappeared.
func (m *Manager) readerChanged(name string, present, gone bool, kind EventKind, now time.Time) {
	var d doomed
	m.mu.Lock()
	m.watching = true
	st := m.readers[name]
	if st == nil {
		st = &readerState{}
		m.readers[name] = st
	}
	st.present = present
	d.staleListings(m)
	var gens []uint64
	for _, c := range m.cards {
		// An insertion ends nothing but the generations of cards surely in that reader (there should be none: the
		// removal came first). A removal ends every generation it may concern.
		if !c.concerns(name) || (kind == CardInserted && len(c.readers) != 1) {
			continue
		}
		if c.live() || kind == CardRemoved {
			ended := d.endGeneration(m, c)
			if kind == CardInserted {
				ended = c.gen
			}
			gens = append(gens, ended)
		}
	}
	if gone {
		delete(m.readers, name)
	}
	ev := Event{Kind: kind, Reader: name, Time: now}
	if len(gens) == 1 {
		ev.Generation = gens[0]
	}
	d.emit(m, ev)
	m.mu.Unlock()
	d.carryOut(m)
}

// serviceDown ends every card generation: the PC/SC service is gone, and with it every card session.
func (m *Manager) serviceDown(cause error, now time.Time) {
	var d doomed
	m.mu.Lock()
	m.watching = true
	d.staleListings(m)
	for _, c := range m.cards {
		d.endGeneration(m, c)
	}
	for _, st := range m.readers {
		st.present = false
	}
	d.emit(m, Event{Kind: ServiceDown, Err: cause, Time: now})
	m.mu.Unlock()
	d.carryOut(m)
}

// cardChanged ends c's generation gen after a PKCS#11 error said the card changed (or a token error left its session
// unusable: kind SessionEnded), exactly as a reader event would: stale listings too. A generation that already
// ended is left alone.
func (m *Manager) cardChanged(c *card, gen uint64, cause error, kind EventKind) {
	var d doomed
	m.mu.Lock()
	if c.gen == gen && !m.closed {
		d.staleListings(m)
		ended := d.endGeneration(m, c)
		d.emit(m, Event{Kind: kind, Reader: c.name(), Generation: ended, Err: cause, Time: time.Now()})
	}
	m.mu.Unlock()
	d.carryOut(m)
}

// awaitGenerationEnd waits up to wait for c's generation gen to end through a reader event. Without reader events
// it returns false at once.
func (m *Manager) awaitGenerationEnd(c *card, gen uint64, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		m.mu.Lock()
		watching, ended := m.watching, c.gen != gen
		m.mu.Unlock()
		if !watching {
			return false
		}
		if ended {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
