//go:build race

package main

// raceBuild: the race detector makes sync.Pool drop a quarter of what is
// put back, about one more allocation per call than a normal build.
const raceBuild = true
