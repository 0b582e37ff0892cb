package velo_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/transport/mem"
)

// memInstance starts an instance of service svc named name on n.
func memInstance(t *testing.T, n *mem.Network, d discovery.PeerDiscovery, name, svc string, opts velo.Options, hs ...*velo.HandlerBuilder) *velo.Messenger {
	t.Helper()
	b := velo.NewBuilder().AddTransport(mem.New(n, mem.Options{Addr: name})).Discovery(d).Service(svc).Options(opts)
	for _, h := range hs {
		b.Handle(h.Build())
	}
	return build(t, b)
}

// TestEjectSilentInstance: an instance cut off while calls wait on it is
// left out of the picks within a second (DefaultEjectAfter plus a
// keepalive tick), so later calls go to the others and finish at once;
// healed, it answers the probe pings and is picked again.
func TestEjectSilentInstance(t *testing.T) {
	ctx := testCtx(t)
	n := mem.NewNetwork()
	d := discovery.NewMemory()
	opts := velo.Options{KeepaliveInterval: 500 * time.Millisecond, KeepaliveTimeout: 3 * time.Second}
	var aRuns, bRuns atomic.Int64
	memInstance(t, n, d, "a", "e", opts, counting(&aRuns, time.Millisecond, nil))
	memInstance(t, n, d, "b", "e", opts, counting(&bRuns, time.Millisecond, nil))
	c := build(t, velo.NewBuilder().AddTransport(mem.New(n, mem.Options{Addr: "c"})).Discovery(d).Options(opts))
	waitInstances(t, c, "e", "job", 2)

	type call struct {
		start time.Time
		took  time.Duration
		err   error
	}
	var mu sync.Mutex
	var calls []call
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			repeat(stop, func() bool {
				start := time.Now()
				// Calls caught on a when it is cut off end at their
				// deadline: keep it short.
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := c.Unary("job").Service("e").Send(cctx)
				cancel()
				mu.Lock()
				calls = append(calls, call{start, time.Since(start), err})
				mu.Unlock()
				return true
			})
		})
	}
	time.Sleep(300 * time.Millisecond)
	if aRuns.Load() == 0 || bRuns.Load() == 0 {
		t.Fatalf("before the cut: a ran %d, b ran %d; want both", aRuns.Load(), bRuns.Load())
	}
	n.Partition("a", "c")
	cut := time.Now()
	time.Sleep(2 * time.Second)
	aAtHeal := aRuns.Load()
	n.Heal()
	healed := time.Now()
	var back time.Duration
	for time.Since(healed) < 5*time.Second {
		if aRuns.Load() > aAtHeal+10 {
			back = time.Since(healed)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	var late, slowLate, failed int
	for _, c := range calls {
		if c.err != nil {
			failed++
			t.Logf("call started %v after the cut: %v", c.start.Sub(cut).Round(time.Millisecond), c.err)
		}
		if c.start.After(cut.Add(time.Second)) && c.start.Before(healed) {
			late++
			if c.took > 200*time.Millisecond {
				slowLate++
			}
		}
	}
	t.Logf("%d calls; %d started between 1 s after the cut and the heal, %d of them slower than 200ms; %d failed; a back in the picks %v after the heal",
		len(calls), late, slowLate, failed, back.Round(time.Millisecond))
	if late == 0 || slowLate > 0 {
		t.Errorf("%d of %d calls started more than 1 s after the cut waited over 200ms: the silent instance was still picked", slowLate, late)
	}
	if back == 0 {
		t.Errorf("a ran no call within 5 s of the heal (%d runs): never readmitted", aRuns.Load()-aAtHeal)
	}
}

// TestEjectGoneFromDiscoveryFailsPendingAtOnce: an instance that is
// silent and that discovery drops fails the calls waiting on it with
// ErrPeerLost at once, not at their deadline or at the keepalive bound.
func TestEjectGoneFromDiscoveryFailsPendingAtOnce(t *testing.T) {
	ctx := testCtx(t)
	n := mem.NewNetwork()
	d := discovery.NewMemory()
	a := memInstance(t, n, d, "a", "g", velo.Options{}, echoHandler())
	c := build(t, velo.NewBuilder().AddTransport(mem.New(n, mem.Options{Addr: "c"})).Discovery(d))
	waitInstances(t, c, "g", "echo", 1)
	if _, err := c.Unary("echo").Service("g").Send(ctx); err != nil {
		t.Fatal(err)
	}
	n.Partition("a", "c")
	result := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := c.Unary("echo").Instance(a.InstanceID()).Send(cctx)
		result <- err
	}()
	time.Sleep(500 * time.Millisecond) // silent past half the eject bound
	// a withdraws from discovery (its Shutdown does, first thing); its
	// goodbye cannot cross the partition.
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a.Shutdown(sctx)
	}()
	gone := time.Now()
	err := <-result
	took := time.Since(gone)
	t.Logf("call failed %v after the instance left discovery: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, velo.ErrPeerLost) || took > time.Second {
		t.Errorf("pending call: %v after %v, want ErrPeerLost within 1s", err, took)
	}
}

// TestEjectMovesIdempotentCalls: routed idempotent calls waiting on an
// instance that goes silent are retried elsewhere as it is ejected, so
// every call succeeds, long before the keepalive bound or its deadline.
func TestEjectMovesIdempotentCalls(t *testing.T) {
	ctx := testCtx(t)
	n := mem.NewNetwork()
	d := discovery.NewMemory()
	var aRuns, bRuns atomic.Int64
	memInstance(t, n, d, "a", "m", velo.Options{}, counting(&aRuns, time.Millisecond, nil))
	memInstance(t, n, d, "b", "m", velo.Options{}, counting(&bRuns, time.Millisecond, nil))
	c := build(t, velo.NewBuilder().AddTransport(mem.New(n, mem.Options{Addr: "c"})).Discovery(d))
	waitInstances(t, c, "m", "job", 2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	var failed []error
	for range 8 {
		wg.Go(func() {
			repeat(stop, func() bool {
				start := time.Now()
				_, err := c.Unary("job").Service("m").Retry(velo.RetryPolicy{Attempts: 3}).Idempotent().Send(ctx)
				mu.Lock()
				slowest = max(slowest, time.Since(start))
				if err != nil {
					failed = append(failed, err)
				}
				mu.Unlock()
				return true
			})
		})
	}
	time.Sleep(300 * time.Millisecond)
	n.Partition("a", "c")
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("a ran %d, b ran %d; slowest call %v; %d failed", aRuns.Load(), bRuns.Load(), slowest.Round(time.Millisecond), len(failed))
	if len(failed) > 0 {
		t.Errorf("%d calls failed, the first: %v", len(failed), failed[0])
	}
	if slowest > time.Second {
		t.Errorf("a call took %v: calls caught on the silent instance were not moved at its ejection", slowest)
	}
}
