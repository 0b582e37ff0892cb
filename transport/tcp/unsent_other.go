//go:build !linux

package tcp

import "net"

func limitUnsent(*net.TCPConn) {}
