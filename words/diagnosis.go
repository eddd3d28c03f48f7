package words

import "github.com/cardmail/cardmail/diagnosis"

// Message returns the plain-words headline for a diagnosis code.
func Message(l Lang, c diagnosis.Code) string { return T(l, "code."+string(c)+".message", nil) }

// Remedy returns what the person can do about a diagnosis code.
func Remedy(l Lang, c diagnosis.Code) string { return T(l, "code."+string(c)+".remedy", nil) }
