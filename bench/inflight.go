package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo"
)

// -mode inflight: how much client memory a unary call costs while it
// waits for its answer. The server's hold handler blocks every call until
// released, so that all of them are pending at once; the client's heap is
// measured before the calls start and once the server holds all of them.

// inflightPayload is the request of every call; all calls share one slice,
// so no payload is counted per call.
const inflightPayload = 32

// inflightResult is what measureInflight found.
type inflightResult struct {
	calls        int
	heapPerCall  float64 // bytes of live heap per pending call, beyond an idle goroutine
	stackPerCall float64 // bytes of goroutine stack per pending call, beyond an idle goroutine (not heap)
	heapBase     uint64  // live heap with the goroutines parked, before the calls
	heapPending  uint64  // live heap with every call pending
	took         time.Duration
}

// inflightTimeout bounds the whole measurement.
const inflightTimeout = 5 * time.Minute

// measureInflight makes n unary calls to the hold handler of the server c
// knows, each from a goroutine of its own, and measures the client's live
// heap per pending call. The baseline is taken with the n goroutines
// already started and parked, so that what is charged to a call is what
// the call itself holds: its entry in the pending table, the call record
// and its channel, the select's waiters, and whatever the builder keeps.
// Goroutine stacks are not heap; their growth is reported apart. Every
// call must complete once the server releases them.
func measureInflight(ctx context.Context, c *veloConn, n int) (inflightResult, error) {
	res := inflightResult{calls: n}
	ctx, cancel := context.WithTimeout(ctx, inflightTimeout)
	defer cancel()
	payload := makePayload(inflightPayload)
	held := func() (int64, error) {
		b, err := c.m.Unary(heldHandler).Instance(c.server).Send(ctx)
		if err != nil {
			return 0, err
		}
		return parseCount(b)
	}
	if h, err := held(); err != nil || h != 0 {
		return res, fmt.Errorf("server holds %d calls before the start (%v)", h, err)
	}

	var (
		gate    = make(chan struct{})
		started sync.WaitGroup
		ended   sync.WaitGroup
		failed  atomic.Int64
		errOnce sync.Once
		first   error
	)
	started.Add(n)
	for range n {
		ended.Go(func() {
			started.Done()
			<-gate
			_, err := c.m.Unary(holdHandler).RawPayload(payload).Instance(c.server).Send(ctx)
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() { first = err })
			}
		})
	}
	// If anything below fails, let the calls end: the server's calls are
	// released, and cancel ends the ones it never got.
	defer func() {
		c.m.Unary(releaseHandler).Instance(c.server).Send(context.Background())
		cancel()
		ended.Wait()
	}()
	started.Wait()
	base := liveHeap()
	start := time.Now()
	close(gate)

	// Wait until the server holds every call: each was then registered
	// as pending here before it was written.
	for {
		h, err := held()
		if err != nil {
			return res, fmt.Errorf("asking the server how many calls it holds: %w", err)
		}
		if h == int64(n) {
			break
		}
		if f := failed.Load(); f > 0 {
			return res, fmt.Errorf("%d calls failed while starting: %w", f, first)
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("server holds %d of %d calls: %w", h, n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	pending := liveHeap()
	res.took = time.Since(start)
	res.heapBase, res.heapPending = base.HeapAlloc, pending.HeapAlloc
	res.heapPerCall = (float64(pending.HeapAlloc) - float64(base.HeapAlloc)) / float64(n)
	res.stackPerCall = (float64(pending.StackInuse) - float64(base.StackInuse)) / float64(n)

	if _, err := c.m.Unary(releaseHandler).Instance(c.server).Send(ctx); err != nil {
		return res, fmt.Errorf("release: %w", err)
	}
	ended.Wait()
	if f := failed.Load(); f > 0 {
		return res, fmt.Errorf("%d of %d calls failed: %w", f, n, first)
	}
	return res, nil
}

// liveHeap collects garbage (twice, so that objects freed by finalizers
// or swept late are gone too) and reads the memory statistics.
func liveHeap() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// dialInflight connects a client that may keep calls pending on the
// server: MaxCallsInFlight raised above n.
func dialInflight(ctx context.Context, addr string, n int) (*veloConn, error) {
	return dialVeloConn(ctx, "tcp", env{}, addr, velo.Options{MaxCallsInFlight: n + 64})
}

func runInflight(cfg config, stdout, stderr io.Writer) (err error) {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	name := veloServerFor("tcp")
	ch, err := startChild(name, exec.Command(exe, "-"+serveFlag, name), stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ch.stop()) }()
	ctx := context.Background()
	c, err := dialInflight(ctx, ch.addr, cfg.calls)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	res, err := measureInflight(ctx, c, cfg.calls)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "%d unary calls in flight over TCP to a handler that holds them (server in a child process), %d B payload shared by all; all completed once released.\n", res.calls, inflightPayload)
	fmt.Fprintf(stdout, "client heap per pending call: %.0f B (live heap %.1f MiB with the %d goroutines parked, %.1f MiB with every call pending)\n",
		res.heapPerCall, mib(res.heapBase), res.calls, mib(res.heapPending))
	fmt.Fprintf(stdout, "goroutine stack growth per pending call (not heap): %.0f B\n", res.stackPerCall)
	fmt.Fprintf(stdout, "time until the server held every call: %s\n", res.took.Round(time.Millisecond))
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
