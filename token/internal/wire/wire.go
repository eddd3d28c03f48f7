// Package wire holds the gob types exchanged between package token's Client and its agent process over net/rpc.
// net/rpc only carries error strings, so every Response carries its error as data (Error) and the parent rebuilds
// the typed error. Not for use outside package token.
package wire

// Service is the net/rpc service name of the agent.
const Service = "Agent"

// Error is an error flattened for gob. Kind 0 means no error; kinds are defined by package token.
type Error struct {
	Kind      uint8
	Op        string
	Code      uint
	PINReason int
	TriesLeft int
	CountLow  bool
	Msg       string
}

// Request is the argument of every agent method; each method reads the fields it needs.
type Request struct {
	Slot       uint
	KeyID      []byte
	Digest     []byte
	PIN        []byte // zeroed by the agent after C_Login
	PINPad     bool   // C_Login with a NULL PIN (gob cannot tell a nil slice from an empty one)
	SchemeKind int
	Hash       uint
	SaltLength int
}

// TokenInfo mirrors token.TokenInfo field for field (so the two convert).
type TokenInfo struct {
	Label, Serial, Manufacturer, Model string

	LoginRequired      bool
	ProtectedAuthPath  bool
	UserPINCountLow    bool
	UserPINFinalTry    bool
	UserPINLocked      bool
	UserPINToBeChanged bool
}

// Slot mirrors token.Slot.
type Slot struct {
	ID          uint
	Description string
	Token       TokenInfo
}

// Cert is a certificate object as read from the token; parsing happens in the parent.
type Cert struct {
	ID                 []byte
	Label              string
	DER                []byte
	HasPrivateKey      bool
	PrivateKeyInferred bool
}

// Mechanisms mirrors token.Mechanisms.
type Mechanisms struct {
	RSAPKCS, RSAPSS, ECDSA bool
}

// ModuleInfo mirrors token.ModuleInfo without the path (the parent knows it).
type ModuleInfo struct {
	Manufacturer, Description, Version, CryptokiVersion string
}

// Response is the reply of every agent method.
type Response struct {
	Err       Error
	Slots     []Slot
	Certs     []Cert
	Token     TokenInfo
	Mech      Mechanisms
	Signature []byte
	Module    ModuleInfo // Init: C_GetInfo
}
