//go:build race

package velo_test

// raceEnabled: the race detector is on, and its shadow memory adds to
// what a process holds.
const raceEnabled = true
