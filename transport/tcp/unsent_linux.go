package tcp

import (
	"net"
	"syscall"
)

// unsentLowat bounds the bytes a connection's socket holds that the
// network has not taken yet (TCP_NOTSENT_LOWAT): without it the kernel
// queues megabytes of a large payload's chunks, and a small call's frame
// written after them waits for all of them. With it, the writer waits in
// the transport instead, where the next frame of another call can go
// first.
const unsentLowat = 128 << 10

func limitUnsent(tc *net.TCPConn) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, unsentLowat)
	})
}

// tcpNotsentLowat is TCP_NOTSENT_LOWAT (linux/tcp.h), which package
// syscall does not name.
const tcpNotsentLowat = 25
