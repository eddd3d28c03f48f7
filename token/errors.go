package token

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/cardmail/cardmail/token/internal/wire"
)

// Sentinel errors. Every error returned by this package wraps at most one of them; test with errors.Is.
var (
	// ErrModuleNotFound: the PKCS#11 module file does not exist, is not a regular file, or no known module is
	// installed. Always inside a *ModuleError.
	ErrModuleNotFound = errors.New("pkcs11 module not found")
	// ErrNotPKCS11: the file exists but dlopen or C_GetFunctionList failed (miekg/pkcs11 gives no detail).
	// Always inside a *ModuleError.
	ErrNotPKCS11 = errors.New("not a pkcs11 module")
	// ErrTokenUnresponsive: a call did not finish before its deadline; the agent was killed. The Client is dead.
	ErrTokenUnresponsive = errors.New("token unresponsive")
	// ErrAgentExited: the agent process exited (or closed its stdout) on its own; wraps the exit status.
	ErrAgentExited = errors.New("token agent exited")
	// ErrAgentKilled: the Client was killed (Kill, Close, or a cancelled context) while or before the call ran.
	ErrAgentKilled = errors.New("token agent killed")
	// ErrBusy: the caller's context ended while the call waited for the agent to finish the calls before it; the
	// call never started and the agent lives on. Wraps the context's error.
	ErrBusy = errors.New("token busy with other calls")
	// ErrNoSuchKey: no private key object with the requested CKA_ID on the token.
	ErrNoSuchKey = errors.New("no private key with this id")
	// ErrNotLoggedIn: Sign was called for a slot without a successful Login on this Client.
	ErrNotLoggedIn = errors.New("not logged in")
	// ErrBadInput: the caller's arguments are unusable (digest length, unknown scheme or hash).
	ErrBadInput = errors.New("invalid argument")
)

// ModuleError reports a PKCS#11 module that cannot be used. Err is ErrModuleNotFound or ErrNotPKCS11, possibly
// joined with an underlying os error.
type ModuleError struct {
	Path string
	Err  error
}

func (e *ModuleError) Error() string {
	if e.Path == "" {
		return "token: module: " + e.Err.Error()
	}
	return fmt.Sprintf("token: module %q: %v", e.Path, e.Err)
}

func (e *ModuleError) Unwrap() error { return e.Err }

// OpError says which Client operation failed (for example "sign", "login", "start"); Err carries the cause.
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return "token: " + e.Op + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

// CKRError is a PKCS#11 return value other than CKR_OK, from the function named in Op (e.g. "C_Sign").
type CKRError struct {
	Op   string
	Code uint
}

func (e *CKRError) Error() string {
	return fmt.Sprintf("%s: %s (0x%X)", e.Op, CKRName(e.Code), e.Code)
}

// CKRName returns the symbolic name of a CKR_ code ("CKR_DEVICE_REMOVED"), or "CKR_0x..." when unknown.
func CKRName(code uint) string {
	s := pkcs11.Error(code).Error() // "pkcs11: 0x32: CKR_DEVICE_REMOVED"
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ' ' {
			if name := s[i+1:]; len(name) > 4 && name[:4] == "CKR_" {
				return name
			}
			break
		}
	}
	return fmt.Sprintf("CKR_0x%X", code)
}

// CardChanged reports whether the code means the card (or the session on it) is gone, so the agent, its
// sessions, handles and login must be thrown away (measured on OpenSC 0.23: see test-bench.md).
func (e *CKRError) CardChanged() bool {
	switch e.Code {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return true
	}
	return false
}

// CardChanged reports whether err (anywhere in its chain) is a *CKRError whose CardChanged is true.
func CardChanged(err error) bool {
	var ce *CKRError
	return errors.As(err, &ce) && ce.CardChanged()
}

// PINReason says why the token refused a PIN.
type PINReason int

const (
	PINIncorrect PINReason = iota + 1 // CKR_PIN_INCORRECT
	PINLocked                         // CKR_PIN_LOCKED
	PINLenRange                       // CKR_PIN_LEN_RANGE
)

func (r PINReason) String() string {
	switch r {
	case PINIncorrect:
		return "incorrect"
	case PINLocked:
		return "locked"
	case PINLenRange:
		return "length out of range"
	}
	return fmt.Sprintf("PINReason(%d)", int(r))
}

// PINError is returned by Login when the token refused the PIN. The PIN was not retried.
// TriesLeft is read from the token flags after the failure: 0 locked, 1 final try, -1 unknown
// (PKCS#11 does not expose a counter; CountLow says CKF_USER_PIN_COUNT_LOW was set).
type PINError struct {
	Reason    PINReason
	TriesLeft int
	CountLow  bool
	Code      uint // the CKR_ code C_Login returned
}

func (e *PINError) Error() string {
	return fmt.Sprintf("pin %s (%s, tries left %d, count low %t)", e.Reason, CKRName(e.Code), e.TriesLeft, e.CountLow)
}

// Error kinds in wire.Error.Kind.
const (
	wireNone uint8 = iota
	wireCKR
	wirePIN
	wireNotPKCS11
	wireNoSuchKey
	wireNotLoggedIn
	wireBadInput
	wireOther
)

// toWire flattens an agent-side error for gob; typed errors become data.
func toWire(err error) wire.Error {
	if err == nil {
		return wire.Error{}
	}
	var pe *PINError
	if errors.As(err, &pe) {
		return wire.Error{Kind: wirePIN, Code: pe.Code, PINReason: int(pe.Reason), TriesLeft: pe.TriesLeft, CountLow: pe.CountLow}
	}
	var ce *CKRError
	if errors.As(err, &ce) {
		return wire.Error{Kind: wireCKR, Op: ce.Op, Code: ce.Code}
	}
	switch {
	case errors.Is(err, ErrNotPKCS11):
		return wire.Error{Kind: wireNotPKCS11}
	case errors.Is(err, ErrNoSuchKey):
		return wire.Error{Kind: wireNoSuchKey}
	case errors.Is(err, ErrNotLoggedIn):
		return wire.Error{Kind: wireNotLoggedIn}
	case errors.Is(err, ErrBadInput):
		return wire.Error{Kind: wireBadInput, Msg: strings.TrimPrefix(err.Error(), ErrBadInput.Error()+": ")}
	}
	return wire.Error{Kind: wireOther, Msg: err.Error()}
}

// fromWire rebuilds the typed error in the parent; nil when there was no error.
func fromWire(w wire.Error) error {
	switch w.Kind {
	case wireNone:
		return nil
	case wireCKR:
		return &CKRError{Op: w.Op, Code: w.Code}
	case wirePIN:
		return &PINError{Reason: PINReason(w.PINReason), TriesLeft: w.TriesLeft, CountLow: w.CountLow, Code: w.Code}
	case wireNotPKCS11:
		return ErrNotPKCS11
	case wireNoSuchKey:
		return ErrNoSuchKey
	case wireNotLoggedIn:
		return ErrNotLoggedIn
	case wireBadInput:
		return fmt.Errorf("%w: %s", ErrBadInput, w.Msg)
	}
	return errors.New(w.Msg)
}

// ckr converts a miekg/pkcs11 error into a *CKRError naming the C function.
func ckr(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return &CKRError{Op: op, Code: uint(pe)}
	}
	return fmt.Errorf("%s: %w", op, err)
}
