// Package token speaks PKCS#11 to a smart card's module (OpenSC, the CPS middleware Cryptolib CPS, p11-kit, SoftHSM)
// from a supervised child process, the *agent*, so that a module that hangs cannot hang CardMail.
//
// # Why a child process
//
// A PKCS#11 call is a cgo call: it cannot be cancelled. OpenSC 0.23 (Debian 12) blocks forever inside C_Sign when
// the card leaves during the signature, holding its global lock, so every later call of that process hangs too
// (upstream issue 2707). Only killing the process frees the card. The agent is this same executable started with
// CARDMAIL_TOKEN_AGENT=1 (main and every TestMain of a package that starts agents begin with
// `if token.AgentRequested() { os.Exit(token.RunAgent()) }`); it loads one module, calls C_Initialize and serves
// net/rpc (gob) over its stdin and stdout. Its environment never holds CARDMAIL_PIN or CARDMAIL_PASSWORD; a PIN
// crosses the pipe once, for C_Login, and is zeroed on both sides.
//
// # Who kills whom
//
//   - The Client (the parent's end) gives every call a deadline: the per-call timeout of Options, counted from the
//     moment the call reaches the agent (calls reach it one at a time; a call queued behind others does not spend
//     its timeout), capped by the caller's context. When the deadline passes the Client kills the agent (SIGKILL)
//     and the call fails with ErrTokenUnresponsive; a caller whose context ends while its call is still queued gets
//     ErrBusy and the agent lives on.
//   - Kill kills the agent at once (the session manager does so on every card change that concerns it, then waits
//     for Done); Close asks it to C_Finalize and exit, and kills it after CloseGrace.
//   - The agent exits when its stdin closes (the parent exited or closed it). On Windows the parent also puts it in
//     a job object that kills it when the parent dies.
//   - A dead Client stays dead: every later call fails with ErrAgentKilled, ErrTokenUnresponsive or ErrAgentExited.
//     Start a new one.
//
// # What it offers
//
// Module discovery per OS (KnownModules, ResolveModule), slots with their token information and PIN flags, the
// certificates of a token listed without a PIN with a verdict on each (Evaluate: usable for TLS client login, or
// why not), mechanisms, one C_Login per session (never retried), and signatures in PKCS#1 v1.5, PSS and ECDSA. Errors
// are typed: *ModuleError, *OpError, *CKRError (CardChanged tells the return codes that mean the card changed),
// *PINError.
package token
