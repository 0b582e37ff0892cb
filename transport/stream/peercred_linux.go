package stream

import (
	"net"
	"strconv"
	"syscall"
)

// unixIdentity is "unix:uid=N" for the user the peer process of nc runs
// as (SO_PEERCRED), or "" if the kernel does not say.
func unixIdentity(nc *net.UnixConn) string {
	raw, err := nc.SyscallConn()
	if err != nil {
		return ""
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return ""
	}
	return "unix:uid=" + strconv.FormatUint(uint64(cred.Uid), 10)
}
