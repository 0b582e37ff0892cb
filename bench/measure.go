package main

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// measureLatency runs warmup round trips, then len(lat) measured ones, one
// at a time, and summarises them. Each latency is the time between the
// ends of two consecutive calls, so one clock read per call is all the
// overhead.
func measureLatency(ctx context.Context, c RoundTripper, payload []byte, warmup int, lat []time.Duration) (sample, error) {
	for range warmup {
		if err := c.RoundTrip(ctx, payload); err != nil {
			return sample{}, err
		}
	}
	// Start from a collected heap, so that garbage left by the previous
	// system is not charged to this one.
	runtime.GC()
	start := time.Now()
	prev := start
	for i := range lat {
		if err := c.RoundTrip(ctx, payload); err != nil {
			return sample{}, err
		}
		now := time.Now()
		lat[i] = now.Sub(prev)
		prev = now
	}
	return summarize(lat, prev.Sub(start)), nil
}

// measureConcurrent keeps len(workers) calls in flight: each worker makes
// round trips one after the other until ops calls were made in all (after
// warmup unmeasured ones). The rate is ops over the time from the start
// until the last call ended; each call's latency is timed from its start.
func measureConcurrent(ctx context.Context, workers []RoundTripper, payload []byte, warmup, ops int) (sample, error) {
	if _, err := runWorkers(ctx, workers, payload, warmup, false); err != nil {
		return sample{}, err
	}
	runtime.GC()
	start := time.Now()
	lats, err := runWorkers(ctx, workers, payload, ops, true)
	elapsed := time.Since(start)
	if err != nil {
		return sample{}, err
	}
	all := make([]time.Duration, 0, ops)
	for _, l := range lats {
		all = append(all, l...)
	}
	return summarize(all, elapsed), nil
}

// runWorkers shares n calls among the workers, one goroutine each, and
// returns each worker's latencies when timed. The first error stops every
// worker.
func runWorkers(ctx context.Context, workers []RoundTripper, payload []byte, n int, timed bool) ([][]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		left    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	left.Store(int64(n))
	lats := make([][]time.Duration, len(workers))
	for i, w := range workers {
		if timed {
			lats[i] = make([]time.Duration, 0, n/len(workers)+1)
		}
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				t0 := time.Now()
				if err := w.RoundTrip(ctx, payload); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
				if timed {
					lats[i] = append(lats[i], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	return lats, first
}

// measureStream sends warmup messages, then n, each batch ended by the
// server's count, and gives the rate of the measured batch.
func measureStream(ctx context.Context, c Streamer, payload []byte, warmup, n int) (sample, error) {
	if warmup > 0 {
		if err := c.Stream(ctx, payload, warmup); err != nil {
			return sample{}, err
		}
	}
	runtime.GC()
	start := time.Now()
	if err := c.Stream(ctx, payload, n); err != nil {
		return sample{}, err
	}
	elapsed := time.Since(start)
	return sample{rate: float64(n) / elapsed.Seconds(), ops: n}, nil
}

// scaled is how many operations of a payload size a measurement makes,
// from the count given for small payloads: above 4 KiB it shrinks in
// proportion to the size (so a measurement moves about as many bytes as
// one of 4 KiB payloads), but not below least (or n, when smaller).
func scaled(n, payload, least int) int {
	const small = 4 << 10
	if payload <= small {
		return n
	}
	return max(int(int64(n)*small/int64(payload)), min(n, least))
}
