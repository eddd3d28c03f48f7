package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cardmail/cardmail/token"
)

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

// errStaleListing: the listing an identity was chosen from is older than the card's generation; list again.
var errStaleListing = errors.New("listing older than the card generation")

// Identity resolves the selected certificate on the present cards and makes sure its card is logged in (asking the
// PIN at most once per card generation). Errors: *CardError wrapping ErrCardAbsent, ErrNoUsableCertificate,
// ErrWrongIdentity (a pinned certificate and another person's card), ErrCardRemoved or ErrPINCancelled;
// *token.PINError for a refused PIN (never retried); token errors for module trouble.
func (m *Manager) Identity(ctx context.Context, sel Selection) (*Identity, error) {
	for attempt := 1; ; attempt++ {
		certs, err := m.Certificates(ctx)
		if err != nil {
			return nil, err
		}
		c, err := choose(certs, sel)
		if err != nil {
			return nil, err
		}
		s, err := m.session(ctx, c)
		if errors.Is(err, errStaleListing) && attempt < listAttempts {
			continue
		}
		if errors.Is(err, errStaleListing) {
			return nil, &CardError{Reader: c.Reader, Generation: c.gen, Err: ErrCardRemoved}
		}
		if err != nil {
			return nil, err
		}
		return &Identity{Cert: c, Reader: c.Reader, Generation: s.gen, Mechanisms: s.mechs, m: m, s: s}, nil
	}
}

// liveSession returns the session of c's card for the generation c was listed in, or nil.
func (m *Manager) liveSession(c CardCert) *cardSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := c.card.session; s != nil && s.gen == c.gen && s.current() {
		return s
	}
	return nil
}

// session returns the logged-in session of c's card, logging in if its generation has none.
func (m *Manager) session(ctx context.Context, c CardCert) (*cardSession, error) {
	if c.card == nil {
		return nil, &CardError{Reader: c.Reader, Err: fmt.Errorf("%w: certificate not listed by this manager", ErrNoUsableCertificate)}
	}
	if s := m.liveSession(c); s != nil {
		return s, nil
	}
	if err := acquire(ctx, m.loginMu); err != nil {
		return nil, err
	}
	defer func() { <-m.loginMu }()
	if s := m.liveSession(c); s != nil { // another caller logged in while we waited
		return s, nil
	}
	cd, gen := c.card, c.gen
	m.mu.Lock()
	stale := cd.gen != gen
	m.mu.Unlock()
	if stale {
		return nil, errStaleListing
	}

	a, err := m.takeAgent(ctx, cd, gen)
	if err != nil {
		return nil, err
	}
	s, err := m.login(ctx, a, c)
	if err != nil {
		m.mu.Lock()
		if cd.loginAgent == a {
			cd.loginAgent = nil
		}
		m.mu.Unlock()
		m.dropAgent(a)
		if errors.Is(err, token.ErrAgentKilled) && ctx.Err() == nil {
			// Killed by a card event during the login: the card changed; the event already ended the generation.
			return nil, &CardError{Reader: c.Reader, Generation: gen, Err: fmt.Errorf("%w: %w", ErrCardRemoved, err)}
		}
		if token.CardChanged(err) {
			m.cardChanged(cd, gen, err, CardRemoved)
			return nil, &CardError{Reader: c.Reader, Generation: gen, Err: fmt.Errorf("%w: %w", ErrCardRemoved, err)}
		}
		return nil, err
	}
	m.mu.Lock()
	if m.closed || cd.gen != gen || cd.loginAgent != a {
		m.mu.Unlock()
		m.dropAgent(a)
		return nil, &CardError{Reader: c.Reader, Generation: gen, Err: ErrCardRemoved}
	}
	cd.loginAgent = nil
	cd.session = s
	m.stats.Logins++
	m.emit(Event{Kind: LoggedIn, Reader: c.Reader, Generation: gen, TokenSerial: c.TokenSerial, Time: time.Now()})
	m.mu.Unlock()
	return s, nil
}

// login finds c's slot in agent a (by token serial and slot description), asks the PIN and logs in once.
func (m *Manager) login(ctx context.Context, a Agent, c CardCert) (*cardSession, error) {
	gen := c.gen
	slots, err := a.Slots(ctx)
	if err != nil {
		return nil, err
	}
	var slot *token.Slot
	for i := range slots {
		if keyOf(slots[i].Description, slots[i].Token) == c.card.key && slots[i].Description == c.SlotDescription {
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
	s := &cardSession{card: c.card, gen: gen, agent: a, slot: slot.ID, mechs: mechs, m: m}
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
		clear(pin)
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
		m.listing = nil // the token's PIN flags changed: the next listing reads them again
		m.emit(Event{Kind: PINRefused, Reader: c.Reader, Generation: gen, TokenSerial: info.Serial, Err: err, Time: time.Now()})
	case err == nil:
		delete(m.refused, info.Serial)
	}
	m.mu.Unlock()
	if m.cfg.LoginOutcome != nil {
		m.cfg.LoginOutcome(req, err)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}
