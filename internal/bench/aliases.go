package bench

import (
	"github.com/cardmail/cardmail/internal/testpki"
	"github.com/cardmail/cardmail/internal/virtualcard"
)

// The virtual card and the test PKI live in internal/virtualcard and internal/testpki, which do not import testing
// (the demo ships them). The bench, a test-only package, gives them their bench names here.
type (
	Card            = virtualcard.Card
	CardOptions     = virtualcard.CardOptions
	CardCounters    = virtualcard.CardCounters
	InsertError     = virtualcard.InsertError
	PKI             = testpki.PKI
	Identity        = testpki.Identity
	IdentityOptions = testpki.IdentityOptions
	FileError       = testpki.FileError
)

// Names of the two identities Start issues, and of their CA.
const (
	AliceName = testpki.AliceName
	BrunoName = testpki.BrunoName
	CAName    = testpki.CAName
	KeyBits   = testpki.KeyBits
)

// Card defaults and timings (see package virtualcard).
const (
	DefaultPIN      = virtualcard.DefaultPIN
	DefaultTries    = virtualcard.DefaultTries
	RealSignDelay   = virtualcard.RealSignDelay
	RealVerifyDelay = virtualcard.RealVerifyDelay
	DialTimeout     = virtualcard.DialTimeout
)

// Re-exported values and functions.
var (
	DefaultATR         = virtualcard.DefaultATR
	ErrCardInserted    = virtualcard.ErrCardInserted
	ErrCardNotInserted = virtualcard.ErrCardNotInserted
	ErrNotIssuedByCA   = testpki.ErrNotIssuedByCA
	NewCard            = virtualcard.NewCard
	RealCard           = virtualcard.RealCard
	NewPKI             = testpki.NewPKI
	LoadOrCreatePKI    = testpki.LoadOrCreatePKI
	DefaultEmail       = testpki.DefaultEmail
	FileBase           = testpki.FileBase
)
