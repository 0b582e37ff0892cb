package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// -mode mesh: one service of -instances instances in this process, on TCP
// on loopback, found through discovery (in memory). It reports how long
// until every instance saw every other, then has each instance call the
// service (.Service, velo picking the instance) meshCalls times at
// meshInflight in flight, and reports the calls' rate and latency, the
// connections they made, and the heap each connection holds (both of its
// ends are in this process).

const (
	meshCalls    = 256
	meshInflight = 8
	meshTimeout  = 2 * time.Minute
)

func runMesh(cfg config, stdout io.Writer) (err error) {
	n := cfg.instances
	ctx, cancel := context.WithTimeout(context.Background(), meshTimeout)
	defer cancel()
	d := discovery.NewMemory()
	heap0, fds0 := heapInUse(), openFDs()
	start := time.Now()
	ms := make([]*velo.Messenger, 0, n)
	defer func() {
		for _, m := range ms {
			err = errors.Join(err, shutdown(m))
		}
	}()
	for range n {
		id := peer.NewID()
		m, err := velo.NewBuilder().InstanceID(id).AddTransport(tcp.New(tcp.Options{})).Discovery(d).Service("mesh").
			Handle(velo.UnaryHandler("id", func(context.Context, *velo.Context) ([]byte, error) { return id[:], nil }).Build()).
			Build(ctx)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	built := time.Since(start)
	for _, m := range ms {
		for list := range m.WatchInstances(ctx, "mesh") {
			if len(list) == n {
				break
			}
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("mesh: the instances did not all see each other: %w", ctx.Err())
	}
	converged := time.Since(start)
	heapIdle, fdsIdle := heapInUse(), openFDs()

	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, n*meshInflight)
	callStart := time.Now()
	for _, m := range ms {
		for range meshInflight {
			wg.Go(func() {
				local := make([]time.Duration, 0, meshCalls/meshInflight)
				for range meshCalls / meshInflight {
					t := time.Now()
					if _, err := m.Unary("id").Service("mesh").Send(ctx); err != nil {
						errs <- err
						return
					}
					local = append(local, time.Since(t))
				}
				mu.Lock()
				took = append(took, local...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(callStart)
	close(errs)
	for err := range errs {
		return fmt.Errorf("mesh: a call failed: %w", err)
	}
	conns := (openFDs() - fdsIdle) / 2
	heapConns := heapInUse()
	slices.Sort(took)
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "%d instances of one service in one process, TCP on loopback, in-memory discovery\n", n)
	fmt.Fprintf(stdout, "built in %s; every instance saw all %d after %s\n", built.Round(time.Millisecond), n, converged.Round(time.Millisecond))
	fmt.Fprintf(stdout, "idle: %.1f MiB of heap for the %d instances, %d descriptors\n", mib(uint64(heapIdle-heap0)), n, fdsIdle-fds0)
	fmt.Fprintf(stdout, "%d calls through .Service (%d per instance, %d in flight each): %.0f calls/s, p50 %s, p99 %s\n",
		len(took), meshCalls, meshInflight, float64(len(took))/elapsed.Seconds(),
		took[len(took)/2].Round(time.Microsecond), took[len(took)*99/100].Round(time.Microsecond))
	perConn := 0.0
	if conns > 0 {
		perConn = float64(heapConns-heapIdle) / float64(conns)
	}
	fmt.Fprintf(stdout, "connections made: %d of %d possible; heap per connection (both ends): %.1f KiB\n", conns, n*(n-1), perConn/1024)
	return nil
}

// heapInUse is the live heap after collections, in bytes.
func heapInUse() int64 { return int64(liveHeap().HeapInuse) }

// openFDs counts the process's open descriptors (Linux); -1 elsewhere.
func openFDs() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}
