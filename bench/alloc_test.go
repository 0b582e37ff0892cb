package main

import (
	"context"
	"testing"

	"github.com/velo-messenger/velo"
)

// maxUnaryAllocs and maxTypedAllocs bound the client's allocations per
// unary round trip, with a raw payload and with a typed one (a struct
// encoded and decoded with MessagePack): the response frame, which the
// raw result aliases, and for a typed call the encoding, the result and
// what it holds (docs/performance.md, "Against the goals"). In a race
// build each sync.Pool on the path (two for a raw call, four for a typed
// one) adds up to about one (raceBuild).
const (
	maxUnaryAllocs = 2
	maxTypedAllocs = 6
)

func allocBound(n, pools int) float64 {
	if raceBuild {
		return float64(n + pools)
	}
	return float64(n)
}

// TestUnaryClientAllocs counts the allocations of the client side of a
// unary call over TCP, raw and typed; the server runs in a child process,
// so that its allocations are not counted.
func TestUnaryClientAllocs(t *testing.T) {
	c := remoteVelo(t, velo.Options{})
	ctx := context.Background()
	p := benchPayload()
	in := typedMsg{ID: 7, Name: "typed-unary", Data: p}
	var failed error
	fail := func(err error) {
		if err != nil && failed == nil {
			failed = err
		}
	}
	calls := []struct {
		name       string
		max, pools int
		call       func()
	}{
		{"raw", maxUnaryAllocs, 2, func() {
			out, err := c.m.Unary(echoHandler).RawPayload(p).Instance(c.server).Send(ctx)
			if err == nil && len(out) != len(p) {
				err = errShortEcho
			}
			fail(err)
		}},
		{"typed", maxTypedAllocs, 4, func() {
			out, err := velo.TypedUnary[typedMsg](c.m, typedHandler).Payload(in).Instance(c.server).Send(ctx)
			if err == nil && (out.ID != in.ID || len(out.Data) != len(p)) {
				err = errShortEcho
			}
			fail(err)
		}},
	}
	for _, x := range calls {
		for range 200 { // fill the pools and the connection's buffers
			x.call()
		}
		allocs := testing.AllocsPerRun(2000, x.call)
		if failed != nil {
			t.Fatal(failed)
		}
		t.Logf("client allocations per %s unary round trip: %v", x.name, allocs)
		if bound := allocBound(x.max, x.pools); allocs > bound {
			t.Errorf("%v allocations per %s unary round trip on the client, want at most %v", allocs, x.name, bound)
		}
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
