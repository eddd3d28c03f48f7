// Package app is CardMail's application layer: the one set of operations the GUI and the command line both call.
//
//   - Cards (cards.go): the PC/SC readers, the certificates of the present cards with their health, card events,
//     the inventory of a PKCS#11 module; one session manager per module, all fed by one reader watcher.
//   - Accounts (accounts.go): a profile (saved, or built from command-line flags) becomes a live account: its TLS
//     policy, its card session and certificate pinning; check (the diagnosis), folders, headers, messages,
//     attachments, the test message, discovery, and the local bridges (bridge.go).
//
// The edges import the domain packages (session, mail, diagnosis, profile, reader, token, bridge) for their types
// and pure helpers only (the one error-to-code mapping, diagnosis.Classify, in each edge's explain file; formatting
// of certificates): every operation goes through this package, so that what the command line proves, the window
// does.
package app
