package quickack

import (
	"net"
	"syscall"
)

// Now re-arms TCP_QUICKACK on conn: an acknowledgement the kernel was holding goes out now, and the next segments
// are acknowledged at once. Linux resets the flag after use, so callers call Now around every read that matters. It
// does nothing to a connection that is not TCP; errors are ignored (the only cost of a failure is the delay).
func Now(conn net.Conn) {
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
