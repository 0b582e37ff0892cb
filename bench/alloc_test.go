package main

import (
	"context"
	"testing"

	"github.com/velo-messenger/velo"
)

// maxUnaryAllocs bounds the client's allocations per unary round trip
// with a raw payload: velo's goal is at most 3 (docs/performance.md,
// "Against the goals"). The race detector makes sync.Pool drop a quarter
// of what is put back, which costs about one more allocation per call
// than a normal build makes.
const maxUnaryAllocs = 3

// TestUnaryClientAllocs counts the allocations of the client side of a
// unary call over TCP; the server runs in a child process, so that its
// allocations are not counted.
func TestUnaryClientAllocs(t *testing.T) {
	c := remoteVelo(t, velo.Options{})
	ctx := context.Background()
	p := benchPayload()
	var failed error
	call := func() {
		out, err := c.m.Unary(echoHandler).RawPayload(p).Instance(c.server).Send(ctx)
		if err == nil && len(out) != len(p) {
			err = errShortEcho
		}
		if err != nil && failed == nil {
			failed = err
		}
	}
	for range 200 { // fill the pools and the connection's buffers
		call()
	}
	allocs := testing.AllocsPerRun(2000, call)
	if failed != nil {
		t.Fatal(failed)
	}
	t.Logf("client allocations per unary round trip: %v", allocs)
	if allocs > maxUnaryAllocs {
		t.Errorf("%v allocations per unary round trip on the client, want at most %d", allocs, maxUnaryAllocs)
	}
}

// TestInflightHeap keeps 10 000 unary calls pending on a handler that
// holds them (the server in a child process), checks that each costs the
// client less than 1 KiB of heap beyond its goroutine, and that all of
// them complete once released. `go run -C bench . -mode inflight` does the
// same with 100 000 calls and prints the figures.
func TestInflightHeap(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	c := remoteVelo(t, velo.Options{MaxCallsInFlight: n + 64})
	res, err := measureInflight(context.Background(), c, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calls pending: %.0f B of client heap per call, %.0f B of stack growth per call (not heap)",
		n, res.heapPerCall, res.stackPerCall)
	if res.heapPerCall >= 1024 {
		t.Errorf("client heap per pending call %.0f B, want < 1 KiB", res.heapPerCall)
	}
}
