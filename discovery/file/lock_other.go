//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package file

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// lockFile fails: without flock(2) two processes could interleave their
// read-modify-write of the registry and lose each other's entries, which
// is worse than refusing. Lookups still work (they take no lock), so a
// process on such a system can find instances that others registered.
func lockFile(context.Context, string) (func(), error) {
	return nil, fmt.Errorf("discovery/file: no file locking on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
