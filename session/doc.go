// Package session is CardMail's session manager: it binds everything that touches a card (PKCS#11 agent, login,
// key handles, TLS session caches, authenticated connections) to one *card generation* and throws all of it away when
// the card may have changed, so that unplugging and plugging a card back never needs a restart, and another
// person's card never inherits what the previous one unlocked.
//
// # Cards are known by identity, not by name
//
// A card is its token (the token serial, with the label and slot description as a fallback for tokens without a
// serial). The PC/SC reader it sits in is found by matching the PKCS#11 slot description against the reader names
// the watcher reported: equal, or equal to the reader name cut to the 64 bytes of CK_SLOT_INFO.slotDescription
// (OpenSC copies the reader name and cuts it there, real-world.md). The match is a *binding*:
//   - one reader matches: the card is bound to it;
//   - several readers match (two readers whose names share their first 64 bytes, a dual-slot reader): the card is
//     bound to all of them;
//   - no reader matches (a module that describes slots in its own words, such as the CPS middleware, or no watcher):
//     the binding is unknown and every reader concerns the card.
//
// A card generation ends when a removal, reset or disappearance event arrives for a reader the card is bound to,
// when the PC/SC service goes down, when a PKCS#11 call on the card's session says the card changed
// (token.CardChanged), or when the manager closes. When a binding is unsure, an event ends the generation of every
// card it could concern: fail safe, never fail open. Ending a generation kills its agent process and waits until it
// has exited, empties its TLS session cache and closes its tracked connections, and only then tells subscribers.
//
// TLS session caches are per card generation and per certificate, and a cached session or a kept connection is
// only used while its generation is current: a resumed TLS session never authenticates a later card as an earlier
// one.
//
// # PIN
//
// The PIN is asked through the PINPrompt callback, at most once per card generation, never retried after the card
// refused it, and zeroed after the login.
//
// # Files
//
// manager.go (configuration, lifetime, reader events), cards.go (card registry: bindings and generations),
// agents.go (PKCS#11 agent processes), listing.go (certificates and selection), login.go (PIN and login),
// signer.go (identities and signatures), events.go (subscribers), tls.go (TLS hook and session caches).
//
// All methods of Manager are safe for concurrent use.
package session
