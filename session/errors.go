package session

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors from the manager wrap one of these (errors.Is), usually inside a *CardError that says which
// card it was about; PIN failures come back as the token package's *token.PINError.
var (
	// ErrCardAbsent: no card is present (in any reader, or in the reader of the selected certificate).
	ErrCardAbsent = errors.New("no card present")
	// ErrCardRemoved: the card that an identity, signer or connection belonged to was removed or changed.
	ErrCardRemoved = errors.New("card removed or changed")
	// ErrPINCancelled: the PIN prompt was cancelled by the person (or its context ended).
	ErrPINCancelled = errors.New("pin entry cancelled")
	// ErrNoUsableCertificate: cards are present but none holds a certificate fit for TLS client login, or none matches
	// the selection.
	ErrNoUsableCertificate = errors.New("no usable certificate on the present cards")
	// ErrMechanismUnsupported: the card cannot sign with any scheme the server accepts (for instance an RSA card
	// without PSS against a TLS 1.3-only server).
	ErrMechanismUnsupported = errors.New("card cannot sign with a scheme the server accepts")
	// ErrClosed: the manager was closed.
	ErrClosed = errors.New("session manager closed")
)

// CardError tells which card (its reader when known for sure, else its PKCS#11 slot description) and which card
// generation an error is about.
type CardError struct {
	Reader     string
	Generation uint64
	Err        error
}

func (e *CardError) Error() string {
	return fmt.Sprintf("card in %q (generation %d): %v", e.Reader, e.Generation, e.Err)
}

func (e *CardError) Unwrap() error { return e.Err }

// ErrWrongIdentity: cards are present, but none holds the certificate the account (or --cert) is pinned to: the
// card in the reader is not the card of this account. A *WrongIdentityError matches it (and ErrNoUsableCertificate).
var ErrWrongIdentity = errors.New("the card in the reader is not the card of this account")

// WrongIdentityError says which certificate the account is pinned to and which ones the present cards hold (hex
// SHA-256 fingerprints: public data, no names).
type WrongIdentityError struct {
	Want    string
	Present []string
}

func (e *WrongIdentityError) Error() string {
	return fmt.Sprintf("%v: want certificate %s, present %v", ErrWrongIdentity, e.Want, e.Present)
}

// Is makes errors.Is match ErrWrongIdentity and ErrNoUsableCertificate.
func (e *WrongIdentityError) Is(target error) bool {
	return target == ErrWrongIdentity || target == ErrNoUsableCertificate
}
