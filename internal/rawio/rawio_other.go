//go:build !linux

// Package rawio reads and writes sockets with raw non-blocking system
// calls on Linux; elsewhere Wrap returns the conn as it is.
package rawio

import "net"

// Wrap returns nc: raw system calls are used on Linux only.
func Wrap(nc net.Conn) net.Conn { return nc }
