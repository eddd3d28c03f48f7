//go:build !linux

package virtualcard

import "net"

// quickAck is a Linux fix (TCP_QUICKACK); elsewhere delayed ACKs only make the virtual card slower.
func quickAck(net.Conn) {}
