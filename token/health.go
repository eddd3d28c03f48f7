package token

import (
	"math"
	"time"
)

// Card health: what a card's holder must know without typing a PIN. Data only; the GUI and the CLI add the words.

// ExpiryWarningDays: from this many days before a certificate's end, CardMail warns that the card must be renewed
// (a new card takes days to weeks to arrive).
const ExpiryWarningDays = 30

// ExpiryState says how close a certificate is to its end.
type ExpiryState string

// The expiry states.
const (
	ExpiryOK      ExpiryState = "ok"      // more than ExpiryWarningDays left
	ExpirySoon    ExpiryState = "soon"    // ExpiryWarningDays or fewer left
	ExpiryExpired ExpiryState = "expired" // past its end
	ExpiryUnknown ExpiryState = "unknown" // the certificate does not parse
)

// ExpiresInDays returns the whole days from now until notAfter, rounded down: 0 during the last 24 hours, -1 during
// the first day after the end, and so on (negative once expired).
func ExpiresInDays(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

// Expiry returns the days left of c (see ExpiresInDays) and its state at now; ok is false for a malformed
// certificate (days 0, ExpiryUnknown).
func (c *Certificate) Expiry(now time.Time) (days int, state ExpiryState, ok bool) {
	if c.Cert == nil {
		return 0, ExpiryUnknown, false
	}
	days = ExpiresInDays(c.Cert.NotAfter, now)
	switch {
	case now.After(c.Cert.NotAfter):
		return days, ExpiryExpired, true
	case days <= ExpiryWarningDays:
		return days, ExpirySoon, true
	}
	return days, ExpiryOK, true
}

// PINState is the state of the user PIN as C_GetTokenInfo's flags tell it, without a login.
type PINState string

// The PIN states, worst first.
const (
	PINStateLocked   PINState = "locked"    // CKF_USER_PIN_LOCKED: the card refuses every PIN until unblocked
	PINStateFinalTry PINState = "final_try" // CKF_USER_PIN_FINAL_TRY: one wrong PIN locks the card
	PINStateCountLow PINState = "count_low" // CKF_USER_PIN_COUNT_LOW: a wrong PIN was typed since the last good one
	PINStateOK       PINState = "ok"        // none of the above (the module may simply not say)
)

// PINState returns the PIN state the token's flags say.
func (ti TokenInfo) PINState() PINState {
	switch {
	case ti.UserPINLocked:
		return PINStateLocked
	case ti.UserPINFinalTry:
		return PINStateFinalTry
	case ti.UserPINCountLow:
		return PINStateCountLow
	}
	return PINStateOK
}

// PINTriesLeft returns the PIN tries left when the token's flags tell them: 0 when locked, 1 on the final try, -1
// otherwise. PKCS#11 has no field for the count itself: a module knows it (OpenSC 0.23 reads it from the card with
// an ISO 7816 VERIFY status query at every C_GetTokenInfo) but only passes on the two flags above, and
// CKF_USER_PIN_COUNT_LOW, which OpenSC sets only for cards that also report their maximum (its PIV driver does not).
func (ti TokenInfo) PINTriesLeft() int {
	switch {
	case ti.UserPINLocked:
		return 0
	case ti.UserPINFinalTry:
		return 1
	}
	return -1
}

// ModuleInfo describes the PKCS#11 module an agent loaded (C_GetInfo), for the card health display and support.
type ModuleInfo struct {
	Path            string // the file loaded
	Manufacturer    string // manufacturerID, e.g. "OpenSC Project"
	Description     string // libraryDescription, e.g. "OpenSC smartcard framework"
	Version         string // libraryVersion "major.minor", e.g. "0.23"
	CryptokiVersion string // the PKCS#11 version the module implements, e.g. "2.20"
}
