package session

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cardmail/cardmail/token"
)

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
func (id *Identity) Current() bool {
	id.m.mu.Lock()
	defer id.m.mu.Unlock()
	return id.s.current()
}

// Signer returns a crypto.Signer that signs with the card. Every Sign checks the generation first; the agent gives
// each signature the manager's SignTimeout from the moment it starts it. A card-changed PKCS#11 error or a hung
// agent ends the generation and returns a *CardError wrapping ErrCardRemoved or token.ErrTokenUnresponsive.
func (id *Identity) Signer() crypto.Signer { return &cardSigner{id: id} }

// signQueueWait bounds how long a signature waits for the agent to finish the calls before it (other handshakes on
// a slow card); the signature itself then has SignTimeout. Past it the signature fails with token.ErrBusy and the
// card session stays.
const signQueueWait = 30 * time.Second

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
	m := cs.id.m
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
	if !id.Current() {
		return nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: ErrCardRemoved}
	}
	scheme := token.SchemeFor(id.Cert.KeyType, opts)
	ctx, cancel := context.WithTimeout(context.Background(), signQueueWait)
	defer cancel()
	sig, err := id.s.agent.Sign(ctx, id.s.slot, id.Cert.ID, digest, scheme)
	if err == nil {
		return sig, nil
	}
	var pinErr *token.PINError
	if errors.As(err, &pinErr) || errors.Is(err, token.ErrNoSuchKey) || errors.Is(err, token.ErrBusy) {
		return nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: err}
	}
	// Any other failure leaves the token session in an unknown state: end the generation. CKR_GENERAL_ERROR or a
	// hung agent is often the card leaving mid-command before pcscd noticed (it polls every 400 ms), so wait briefly
	// for the reader to confirm before calling it a removal.
	wasCurrent := id.Current()
	removed := token.CardChanged(err) || !wasCurrent || m.awaitGenerationEnd(id.s.card, id.s.gen, removalGrace)
	if wasCurrent || token.CardChanged(err) {
		kind := SessionEnded
		if removed {
			kind = CardRemoved
		}
		m.cardChanged(id.s.card, id.s.gen, err, kind)
	}
	if removed {
		err = fmt.Errorf("%w: %w", ErrCardRemoved, err)
	}
	return nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: err}
}

// removalGrace is how long a failed signature waits for a reader event to end its generation (pcscd polls every
// 400 ms).
const removalGrace = 900 * time.Millisecond
