package bridge

import (
	"net"
	"syscall"
)

// ackNow makes the kernel acknowledge what was just read from c at once instead of up to 40 ms later.
//
// Why: a local client that leaves Nagle's algorithm on (isync's mbsync does) and writes twice in a row (its TLS 1.3
// Finished, then its first command) holds the second write until the first is acknowledged; Linux delays that
// acknowledgement in an interactive exchange, and the bridge, which has nothing to answer to a Finished, sends
// nothing it could ride on. Measured with mbsync over local STARTTLS: one 40-43 ms stall per connection, a third of
// a whole-mailbox sync (BenchmarkBridge). TCP_QUICKACK is not sticky, so it is set after every read; one setsockopt
// on a connection the user's own mail client opened on loopback.
func ackNow(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
