package virtualcard

import (
	"net"
	"syscall"
)

// quickAck re-arms TCP_QUICKACK: vpcd writes length and payload separately without TCP_NODELAY, and delayed ACKs
// then cost ~40 ms per APDU (test-bench.md). Linux resets the flag after use, hence before every read.
func quickAck(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
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
