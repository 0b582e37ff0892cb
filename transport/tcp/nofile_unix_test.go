//go:build unix

package tcp_test

import "syscall"

// setNOFILE lowers this process's soft limit on open descriptors to n.
func setNOFILE(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = n
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

const canSetNOFILE = true
