//go:build !linux

package quickack

import "net"

// Now does nothing here: only Linux has TCP_QUICKACK.
func Now(net.Conn) {}
