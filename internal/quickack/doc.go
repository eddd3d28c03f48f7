// Package quickack defeats the stall between a peer that leaves Nagle's algorithm on and a receiver that delays
// its acknowledgements.
//
// A peer without TCP_NODELAY that writes twice in a row holds its second write until the first is acknowledged;
// Linux delays that acknowledgement (up to 40 ms) when the receiver has nothing to send back on which it could ride.
// Two such peers talk to CardMail: vpcd, which writes an APDU's length and its payload separately (one stall per
// APDU for the virtual card), and mail clients such as isync's mbsync, which write their TLS 1.3 Finished and their
// first command back to back (one stall per local STARTTLS connection to the bridge).
package quickack
