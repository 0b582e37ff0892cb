//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock(2) on the file at path, creating it if
// needed, and returns the function that releases it. It polls with
// LOCK_NB rather than blocking in the kernel, so that ctx can end the
// wait. The lock belongs to the open file description: two goroutines of
// one process exclude each other as two processes do, and a process that
// dies releases it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("discovery/file: lock: %w", err)
	}
	fd := int(f.Fd())
	pause := time.Millisecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(fd, syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("discovery/file: lock %s: %w", path, err)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("discovery/file: waiting for the lock on %s: %w", path, ctx.Err())
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}
