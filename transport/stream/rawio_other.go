//go:build !linux

package stream

import "net"

// withRawIO returns nc: raw system calls are used on Linux only.
func withRawIO(nc net.Conn) net.Conn { return nc }
