//go:build !race

package velo_test

const raceEnabled = false
