//go:build !linux

package velo

// yieldCPU does nothing where the scheduler's handling of a long-running
// thread has not been measured.
func yieldCPU() {}
