package velo_test

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// TestScale64Instances runs one service of 64 instances in this process,
// on TCP, found through discovery: every instance comes to see all the
// others, then each calls the service through .Service, 128 times at 8 in
// flight, and every call succeeds. It reports the connections made, how
// long until every instance saw every other, and the heap each
// connection holds (docs/performance.md quotes these).
func TestScale64Instances(t *testing.T) {
	const n, perInstance, inflight = 64, 128, 8
	ctx := testCtx(t)
	d := discovery.NewMemory()
	heap0 := heapInUse()
	fds0 := openFiles(t)
	start := time.Now()
	ms := make([]*velo.Messenger, n)
	// 3 600 connections opening at once in one process, under the race
	// detector on 2 CPUs, can leave a receive goroutine unscheduled for
	// longer than the default 7 s keepalive timeout: that verdict would
	// be on this machine, not on the mesh. Keepalive has tests of its own.
	opts := velo.Options{KeepaliveTimeout: 30 * time.Second}
	for i := range ms {
		ms[i] = instanceOf(t, d, "mesh", opts, idHandler())
	}
	built := time.Since(start)
	for _, m := range ms {
		waitInstances(t, m, "mesh", "id", n)
	}
	seen := time.Since(start)
	heapIdle := heapInUse()
	fdsIdle := openFiles(t)

	callStart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, m := range ms {
		wg.Go(func() {
			var sub sync.WaitGroup
			for range inflight {
				sub.Go(func() {
					for range perInstance / inflight {
						if _, err := velo.TypedUnary[peer.ID](m, "id").Service("mesh").Send(ctx); err != nil {
							select {
							case errs <- err:
							default:
							}
							return
						}
					}
				})
			}
			sub.Wait()
		})
	}
	wg.Wait()
	calls := time.Since(callStart)
	close(errs)
	for err := range errs {
		t.Fatalf("a call through .Service failed: %v", err)
	}
	// Each connection within this process holds two descriptors, one
	// per end.
	conns := (openFiles(t) - fdsIdle) / 2
	heapConns := heapInUse()
	perConn := 0.0
	if conns > 0 {
		perConn = float64(heapConns-heapIdle) / float64(conns)
	}
	t.Logf("%d instances built in %v; every one saw all %d after %v; %d instances' idle heap %.1f MiB (%d descriptors)",
		n, built.Round(time.Millisecond), n, seen.Round(time.Millisecond), n, float64(heapIdle-heap0)/(1<<20), fdsIdle-fds0)
	t.Logf("%d calls through .Service in %v (%.0f calls/s); %d connections (of %d possible), %.1f KiB of heap each",
		n*perInstance, calls.Round(time.Millisecond), float64(n*perInstance)/calls.Seconds(), conns, n*(n-1), perConn/1024)
}

// heapInUse is the live heap after a collection, in bytes.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// openFiles counts this process's open descriptors.
func openFiles(t testing.TB) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(fds)
}
