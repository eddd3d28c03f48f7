// Package reader lists PC/SC smart-card readers and watches reader and card events, through the system's PC/SC
// service (pcsc-lite's pcscd on Linux) with github.com/ebfe/scard.
//
// List reads the readers and their card state once. Watch sends the current state and then every change
// (reader added or removed, card inserted, removed or reset, service lost or back) on a channel until its context
// ends. Card changes are recognised by presence, ATR and the reader's event counter, so that a card pulled out and
// pushed back between two polls of the service is not missed: whatever was bound to the previous card session must be
// dropped on CardRemoved and CardReset.
//
// The package holds no user-facing text: EventKind.String values and Error strings are technical identifiers.
//
// Example: print the readers, then follow card events until ctx ends.
//
//	readers, err := reader.List(ctx)
//	if errors.Is(err, reader.ErrServiceNotRunning) {
//		return err // pcscd is not running
//	}
//	for _, r := range readers {
//		fmt.Println(r.Name, r.CardPresent)
//	}
//	for ev := range reader.Watch(ctx) { // closed after ctx ends
//		switch ev.Kind {
//		case reader.CardRemoved, reader.CardReset, reader.ServiceDown:
//			// drop the PKCS#11 session bound to ev.Reader (all of them for ServiceDown)
//		case reader.CardInserted:
//			// a new card session may start in ev.Reader
//		}
//	}
//
// pcsc-lite facts this package relies on (measured with pcsc-lite 1.9.9): the upper 16 bits of a reader's event state
// count card insertions and removals; a context blocked in SCardGetStatusChange delays other calls on the same
// context by seconds, so List and each Watch use their own context; a context that saw the daemon die returns
// SCARD_F_COMM_ERROR forever although SCardIsValidContext accepts it, so it is released and a new one established.
package reader
