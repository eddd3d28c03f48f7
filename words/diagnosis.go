package words

// Message returns the plain-words headline for a diagnosis code (package diagnosis's Code, or any string code).
func Message[C ~string](l Lang, c C) string { return T(l, "code."+string(c)+".message", nil) }

// Remedy returns what the person can do about a diagnosis code.
func Remedy[C ~string](l Lang, c C) string { return T(l, "code."+string(c)+".remedy", nil) }
