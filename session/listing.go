package session

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cardmail/cardmail/token"
)

// CardCert is a certificate found on a present card.
type CardCert struct {
	token.Certificate
	// Reader is the PC/SC reader that holds the card when it is known for sure, else the PKCS#11 slot description.
	Reader string
	// SlotDescription is the PKCS#11 slot description the module gave (at most 64 bytes; for OpenSC, the reader name
	// cut there).
	SlotDescription string
	// Token is the token's information (label, PIN flags) as the listing read it, without a PIN.
	Token token.TokenInfo

	card *card  // the card registry entry, nil for values not made by the manager
	gen  uint64 // the card generation the listing saw
}

// Selection says which certificate to log in with.
type Selection struct {
	// CertSHA256 is the hex SHA-256 of the certificate (case and colons ignored); "" selects the first usable
	// certificate of the present cards in reader-name order. An account that names a certificate is pinned to it:
	// with other cards present, resolving it fails with ErrWrongIdentity, never falls back to another card.
	CertSHA256 string
}

// listAttempts bounds how often Certificates lists again when card events keep changing the cards under it.
const listAttempts = 3

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

	for attempt := 1; ; attempt++ {
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

		slots, a, err := m.list(ctx)
		if err == nil {
			certs, current := m.register(slots, ver)
			if current {
				m.setSpare(a, ver)
				if len(certs) == 0 {
					return nil, &CardError{Err: ErrCardAbsent}
				}
				return slices.Clone(certs), nil
			}
			m.dropAgent(a)
		}
		if err != nil && (!errors.Is(err, token.ErrAgentKilled) || ctx.Err() != nil) {
			return nil, err
		}
		// A card event killed the listing agent mid-call, or came while it listed: list the new state (or learn
		// that no card is left).
		if present, known := m.anyCardPresent(); known && !present {
			return nil, &CardError{Err: ErrCardAbsent}
		}
		if attempt == listAttempts {
			if err == nil {
				err = fmt.Errorf("%w: the cards kept changing while they were listed", ErrCardRemoved)
			}
			return nil, &CardError{Err: err}
		}
	}
}

// listedSlot is one slot a listing agent saw, with its certificates.
type listedSlot struct {
	slot  token.Slot
	certs []token.Certificate
}

// list runs an agent that lists every slot's certificates. On success the agent is returned alive (the caller
// keeps it as the spare for the next login, saving a process start and a C_Initialize on the way from card
// insertion to the first handshake); on error it is gone.
func (m *Manager) list(ctx context.Context) ([]listedSlot, Agent, error) {
	a, err := m.startAgent(ctx)
	if err != nil {
		return nil, nil, err
	}
	if mi, ok := a.(interface{ ModuleInfo() token.ModuleInfo }); ok {
		m.mu.Lock()
		m.module = mi.ModuleInfo()
		m.mu.Unlock()
	}
	slots, err := a.Slots(ctx)
	if err != nil {
		m.dropAgent(a)
		return nil, nil, err
	}
	var out []listedSlot
	for _, s := range slots {
		certs, err := a.Certificates(ctx, s.ID)
		if err != nil {
			if token.CardChanged(err) {
				continue // the card left while we listed it: it is absent, not an error
			}
			m.dropAgent(a)
			return nil, nil, err
		}
		out = append(out, listedSlot{slot: s, certs: certs})
	}
	return out, a, nil
}

// register files a listing made at version ver in the card registry and caches it, if no card event happened
// since; current is false otherwise (the listing may describe cards that are gone).
func (m *Manager) register(slots []listedSlot, ver uint64) (certs []CardCert, current bool) {
	var d doomed
	m.mu.Lock()
	if m.closed || m.version != ver {
		m.mu.Unlock()
		return nil, false
	}
	now := time.Now()
	for _, s := range slots {
		c := m.registerCard(&d, s.slot.Description, s.slot.Token, now)
		for _, cert := range s.certs {
			certs = append(certs, CardCert{Certificate: cert, Reader: c.name(), SlotDescription: s.slot.Description,
				Token: s.slot.Token, card: c, gen: c.gen})
		}
	}
	slices.SortStableFunc(certs, func(a, b CardCert) int {
		if c := strings.Compare(a.Reader, b.Reader); c != 0 {
			return c
		}
		if a.Verdict.Usable != b.Verdict.Usable {
			if a.Verdict.Usable {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.TokenSerial, b.TokenSerial)
	})
	m.listing, m.listVer = certs, ver
	m.mu.Unlock()
	d.carryOut(m) // a card seen under a new binding ended its generation
	return certs, true
}

// normalizeFingerprint lowercases a hex fingerprint and drops colons and spaces.
func normalizeFingerprint(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(s))
}

// Fingerprint returns the selection form of a certificate's SHA-256 (lowercase hex).
func (c CardCert) Fingerprint() string { return hex.EncodeToString(c.SHA256[:]) }

// choose applies a selection to a listing. A pinned certificate that no present card holds is ErrWrongIdentity
// (which also matches ErrNoUsableCertificate): the cards present belong to someone else.
func choose(certs []CardCert, sel Selection) (CardCert, error) {
	want := normalizeFingerprint(sel.CertSHA256)
	for _, c := range certs {
		if want != "" && c.Fingerprint() != want {
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
	if want != "" && len(certs) > 0 {
		present := make([]string, 0, len(certs))
		for _, c := range certs {
			present = append(present, c.Fingerprint())
		}
		return CardCert{}, &CardError{Reader: certs[0].Reader, Err: &WrongIdentityError{Want: want, Present: present}}
	}
	return CardCert{}, &CardError{Err: ErrNoUsableCertificate}
}

// ModuleInfo describes the PKCS#11 module of the last agent the manager started to list the cards (ok is false
// before the first listing, and with agents that do not describe their module, such as test fakes).
func (m *Manager) ModuleInfo() (info token.ModuleInfo, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.module, m.module.Path != ""
}
