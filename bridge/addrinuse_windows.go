package bridge

import (
	"errors"
	"syscall"
)

// wsaeAddrInUse is WSAEADDRINUSE: Windows reports a taken port with the Winsock code, not EADDRINUSE.
const wsaeAddrInUse = syscall.Errno(10048)

func isAddrInUse(err error) bool {
	return errors.Is(err, wsaeAddrInUse) || errors.Is(err, syscall.EADDRINUSE)
}
