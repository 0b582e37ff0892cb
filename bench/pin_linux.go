//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// defaultPin is the placement used unless -pin says otherwise.
const defaultPin = pinSame

// pinTo restricts every thread of this process to the given CPUs, and
// GOMAXPROCS to their number. Processes started afterwards inherit the
// restriction (Linux keeps a thread's CPU affinity across fork and exec).
//
// Affinity belongs to threads, not processes: each thread listed in
// /proc/self/task is pinned in turn. A thread the runtime starts meanwhile
// inherits the affinity of the thread that made it, which may not be pinned
// yet, so passes repeat until one finds no thread left to pin.
func pinTo(cpus []int) error {
	var mask [16]uint64 // 1024 CPUs, the kernel's default cpumask size
	for _, c := range cpus {
		if c < 0 || c >= 64*len(mask) {
			return fmt.Errorf("cpu %d out of range", c)
		}
		mask[c/64] |= 1 << (c % 64)
	}
	pinned := make(map[int]bool)
	for pass := 0; ; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || pinned[tid] {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY,
				uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask[0])))
			if errno != 0 && errno != syscall.ESRCH { // ESRCH: the thread ended
				return fmt.Errorf("sched_setaffinity(%d): %w", tid, errno)
			}
			pinned[tid] = true
			fresh++
		}
		if fresh == 0 {
			break
		}
		if pass == 100 {
			return fmt.Errorf("threads keep appearing while pinning")
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() ([]int, error) {
	var mask [16]uint64
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY,
		0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask[0])))
	if errno != 0 {
		return nil, fmt.Errorf("sched_getaffinity: %w", errno)
	}
	var cpus []int
	for i := range 64 * len(mask) {
		if mask[i/64]&(1<<(i%64)) != 0 {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}
