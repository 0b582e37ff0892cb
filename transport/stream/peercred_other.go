//go:build !linux

package stream

import "net"

// unixIdentity is "": this platform's peer credentials are not read.
func unixIdentity(*net.UnixConn) string { return "" }
