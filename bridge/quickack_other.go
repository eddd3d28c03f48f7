//go:build !linux

package bridge

import "net"

// ackNow does nothing here: only Linux has TCP_QUICKACK (see quickack_linux.go for why the bridge wants it).
func ackNow(net.Conn) {}
