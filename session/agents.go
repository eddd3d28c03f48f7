package session

import (
	"context"
	"time"
)

// agentUse says what a live agent works for. Every agent the manager started is in Manager.agents until it is
// dropped:
//   - listing: it lists the cards, or waits as the spare for the next login; any card event kills it;
//   - otherwise it logs in or serves the session of one card generation (card.loginAgent / card.session), and the
//     end of that generation kills it.
type agentUse struct {
	listing bool
}

// startAgent starts an agent that counts as listing until it is given to a card.
func (m *Manager) startAgent(ctx context.Context) (Agent, error) {
	a, err := m.cfg.StartAgent(ctx, m.cfg.Module)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.stats.AgentsStarted++
	closed := m.closed
	if !closed {
		m.agents[a] = agentUse{listing: true}
	}
	m.mu.Unlock()
	if closed {
		killAndWait(a)
		return nil, ErrClosed
	}
	return a, nil
}

// dropAgent kills a, waits until its process has exited (bounded by agentExitWait) and forgets it.
func (m *Manager) dropAgent(a Agent) {
	killAndWait(a)
	m.mu.Lock()
	delete(m.agents, a)
	m.mu.Unlock()
}

// killAndWait kills a and waits until its process has exited, up to agentExitWait.
func killAndWait(a Agent) {
	a.Kill()
	select {
	case <-a.Done():
	case <-time.After(agentExitWait):
	}
}

// spareIdle is how long the spare agent waits for a login before it is closed: it saves a process start on the way
// from a card insertion to the first handshake, but an idle app should not keep a module loaded for nothing.
const spareIdle = 30 * time.Second

// setSpare keeps a as the spare agent if no card event happened since version ver (for spareIdle at most);
// otherwise it drops it.
func (m *Manager) setSpare(a Agent, ver uint64) {
	m.mu.Lock()
	old := m.spare
	m.spare, m.spareVer = nil, 0
	_, live := m.agents[a]
	if !m.closed && live && m.version == ver {
		m.spare, m.spareVer = a, ver
		spare := a
		a = nil
		time.AfterFunc(spareIdle, func() {
			m.mu.Lock()
			idle := m.spare == spare
			if idle {
				m.spare = nil
			}
			m.mu.Unlock()
			if idle {
				_ = spare.Close()
				m.mu.Lock()
				delete(m.agents, spare)
				m.mu.Unlock()
			}
		})
	}
	m.mu.Unlock()
	for _, x := range []Agent{old, a} {
		if x != nil {
			m.dropAgent(x)
		}
	}
}

// takeAgent returns the spare agent when no card event happened since it listed the cards, else a new agent. The
// agent is handed to c for generation gen (a card event of c kills it from now on); if that generation has already
// ended, the agent is dropped and ErrCardRemoved returned.
func (m *Manager) takeAgent(ctx context.Context, c *card, gen uint64) (Agent, error) {
	m.mu.Lock()
	a := m.spare
	fresh := a != nil && m.spareVer == m.version
	m.spare = nil
	m.mu.Unlock()
	if a != nil && !fresh {
		m.dropAgent(a)
		a = nil
	}
	if a == nil {
		var err error
		if a, err = m.startAgent(ctx); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	_, live := m.agents[a]
	ok := live && c.gen == gen && !m.closed
	if ok {
		m.agents[a] = agentUse{}
		c.loginAgent = a
	}
	m.mu.Unlock()
	if !ok {
		m.dropAgent(a)
		return nil, &CardError{Reader: c.name(), Generation: gen, Err: ErrCardRemoved}
	}
	return a, nil
}
