//go:build linux && race

package rawio

import (
	"runtime"
	"unsafe"
)

// ioSync orders, for the race detector, what one goroutine wrote before a
// write to a socket before what another read from a socket after, as the
// syscall package does for its own calls: a raw system call is invisible
// to the race detector otherwise.
var ioSync int64

// raceRead tells the race detector that the kernel read b (a write).
func raceRead(b []byte) {
	runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync))
	if len(b) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&b[0]), len(b))
	}
}

// raceWrite tells the race detector that the kernel wrote b (a read).
func raceWrite(b []byte) {
	if len(b) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&b[0]), len(b))
	}
	runtime.RaceAcquire(unsafe.Pointer(&ioSync))
}
