package stream

import (
	"testing"
	"time"
)

// WidenLinger sets lingerTick to d for the test t, before t starts any
// Serve: a caller that the test runs on a loaded machine then finds the
// turn still free after a few milliseconds without the CPU. t's cleanups
// registered after it run first (those that wait for Serve to return).
func WidenLinger(t *testing.T, d time.Duration) {
	old := lingerTick
	lingerTick = d
	t.Cleanup(func() { lingerTick = old })
}
