package velo_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// instanceOf starts an instance of service svc on d with the handlers hs.
func instanceOf(t testing.TB, d discovery.PeerDiscovery, svc string, opts velo.Options, hs ...*velo.HandlerBuilder) *velo.Messenger {
	t.Helper()
	b := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{})).Discovery(d).Service(svc).Options(opts)
	for _, h := range hs {
		b.Handle(h.Build())
	}
	return build(t, b)
}

// waitInstances waits until m knows n instances of svc, each offering
// handler if it is not empty.
func waitInstances(t testing.TB, m *velo.Messenger, svc, handler string, n int) []peer.Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last []peer.Info
	for list := range m.WatchInstances(ctx, svc) {
		last = slices.DeleteFunc(list, func(i peer.Info) bool { return handler != "" && !i.Offers(handler) })
		if len(last) >= n {
			return last
		}
	}
	t.Fatalf("%s knows %d instances of %q offering %q, want %d: %v", m.InstanceID().Short(), len(last), svc, handler, n, last)
	return nil
}

// TestServiceHandlersReadyWhenPublished: an instance built with Handle is
// published with its handlers, so a call sent the moment discovery lists
// it finds them, by id and by service.
func TestServiceHandlersReadyWhenPublished(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	c := build(t, velo.NewBuilder().Discovery(d))
	wctx, cancel := context.WithCancel(ctx)
	changes, err := d.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for range changes {
		}
	}()
	for i := range 5 {
		w := instanceOf(t, d, "workers", velo.Options{}, echoHandler())
		for ch := range changes {
			if ch.Kind == discovery.Put && ch.Info.ID == w.InstanceID() {
				if !ch.Info.Offers("echo") || ch.Info.Service != "workers" {
					t.Fatalf("worker %d published as %v, handlers %v", i, ch.Info, ch.Info.Handlers)
				}
				break
			}
		}
		if _, err := c.Unary("echo").Instance(w.InstanceID()).RawPayload([]byte("x")).Send(ctx); err != nil {
			t.Fatalf("worker %d: call by id as soon as it was published: %v", i, err)
		}
		waitInstances(t, c, "workers", "echo", i+1)
		if _, err := c.Unary("echo").Service("workers").RawPayload([]byte("x")).Send(ctx); err != nil {
			t.Fatalf("worker %d: call by service as soon as it was listed: %v", i, err)
		}
	}
}

func echoHandler() *velo.HandlerBuilder {
	return velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	})
}

// TestServiceHandlerChangesReachEveryone: a handler registered after
// Build is published to discovery and to connected peers; one
// unregistered finishes what it runs, then is not found anywhere.
func TestServiceHandlerChangesReachEveryone(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	w := instanceOf(t, d, "workers", velo.Options{}, echoHandler())
	c := build(t, velo.NewBuilder().Discovery(d))
	if _, err := c.Unary("echo").Service("workers").Send(ctx); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	mustRegister(t, w, velo.UnaryHandler("slow", func(context.Context, *velo.Context) ([]byte, error) {
		started <- struct{}{}
		<-release
		return []byte("done"), nil
	}))
	waitInstances(t, c, "workers", "slow", 1)
	if _, err := discoverytestEventually(func() error {
		info, err := d.Lookup(ctx, w.InstanceID())
		if err != nil || !info.Offers("slow") {
			return errors.New("discovery does not list slow yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A late joiner learns of it from the hello.
	late := build(t, velo.NewBuilder().Discovery(d))
	waitInstances(t, late, "workers", "slow", 1)

	result := make(chan error, 1)
	go func() {
		got, err := c.Unary("slow").Service("workers").Send(ctx)
		if err == nil && string(got) != "done" {
			err = errors.New("slow answered " + string(got))
		}
		result <- err
	}()
	<-started
	if err := w.UnregisterHandler("slow"); err != nil {
		t.Fatal(err)
	}
	if err := w.UnregisterHandler("slow"); !errors.Is(err, velo.ErrHandlerNotFound) {
		t.Errorf("second UnregisterHandler = %v, want ErrHandlerNotFound", err)
	}
	if _, err := c.Unary("slow").Instance(w.InstanceID()).Send(ctx); !errors.Is(err, velo.ErrHandlerNotFound) || !velo.NotDelivered(err) {
		t.Errorf("call to an unregistered handler: %v, want ErrHandlerNotFound, not delivered", err)
	}
	close(release)
	if err := <-result; err != nil {
		t.Errorf("call running while its handler was unregistered: %v", err)
	}
	for _, m := range []*velo.Messenger{c, late} {
		if _, err := discoverytestEventually(func() error {
			_, err := m.Unary("slow").Service("workers").Send(ctx)
			if !errors.Is(err, velo.ErrHandlerNotFound) {
				return errors.New("still routed")
			}
			return nil
		}); err != nil {
			t.Errorf("%s: slow after it was unregistered: %v", m.InstanceID().Short(), err)
		}
	}
}

// discoverytestEventually retries f every 10 ms for 5 s.
func discoverytestEventually(f func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := f()
		if err == nil || time.Since(start) > 5*time.Second {
			return time.Since(start), err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoutingNoInstanceIsPromptAndNotDelivered: a call nobody can take
// fails at once.
func TestRoutingNoInstanceIsPromptAndNotDelivered(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	instanceOf(t, d, "a", velo.Options{}, echoHandler())
	c := build(t, velo.NewBuilder().Discovery(d))
	waitInstances(t, c, "a", "echo", 1)
	for name, send := range map[string]func() error{
		"unknown handler":  func() error { _, err := c.Unary("nobody").Send(ctx); return err },
		"unknown service":  func() error { _, err := c.Unary("echo").Service("b").Send(ctx); return err },
		"am-send":          func() error { return c.AMSend("nobody").Service("a").Send(ctx) },
		"retried":          func() error { _, err := c.Unary("nobody").Retry(velo.RetryPolicy{Attempts: 3}).Send(ctx); return err },
		"hedged":           func() error { _, err := c.Unary("nobody").Hedge(time.Millisecond).Send(ctx); return err },
		"typed by service": func() error { _, err := velo.TypedUnary[int](c, "nobody").Service("a").Send(ctx); return err },
	} {
		start := time.Now()
		err := send()
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("%s: failed after %v", name, took)
		}
		if !errors.Is(err, velo.ErrHandlerNotFound) || !velo.NotDelivered(err) {
			t.Errorf("%s: %v, want ErrHandlerNotFound, not delivered", name, err)
		}
	}
}

// TestRoutingKeepsToTheService: .Service picks only instances of that
// service; no service picks among all that offer the handler.
func TestRoutingKeepsToTheService(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	ids := map[string][]peer.ID{}
	for _, svc := range []string{"a", "a", "b"} {
		w := instanceOf(t, d, svc, velo.Options{}, idHandler())
		ids[svc] = append(ids[svc], w.InstanceID())
	}
	c := build(t, velo.NewBuilder().Discovery(d).Options(velo.Options{Balancer: velo.RoundRobin()}))
	waitInstances(t, c, "", "id", 3)
	seen := func(svc string) map[peer.ID]int {
		got := map[peer.ID]int{}
		for range 30 {
			id, err := velo.TypedUnary[peer.ID](c, "id").Service(svc).Send(ctx)
			if err != nil {
				t.Fatalf("service %q: %v", svc, err)
			}
			got[id]++
		}
		return got
	}
	a, b, all := seen("a"), seen("b"), seen("")
	if len(a) != 2 || a[ids["a"][0]] != 15 || a[ids["a"][1]] != 15 {
		t.Errorf("service a: %v, want 15 calls on each of %v", a, ids["a"])
	}
	if len(b) != 1 || b[ids["b"][0]] != 30 {
		t.Errorf("service b: %v, want all on %v", b, ids["b"])
	}
	if len(all) != 3 {
		t.Errorf("no service: %v, want all three instances", all)
	}
	// An instance given by id wins over the service.
	id, err := velo.TypedUnary[peer.ID](c, "id").Service("a").Instance(ids["b"][0]).Send(ctx)
	if err != nil || id != ids["b"][0] {
		t.Errorf("Instance with Service: %v, %v; want %v", id, err, ids["b"][0])
	}
}

// idHandler answers the id of its instance.
func idHandler() *velo.HandlerBuilder {
	return velo.TypedUnaryHandler("id", func(_ context.Context, c *velo.TypedContext[struct{}]) (peer.ID, error) {
		return c.Msg.InstanceID(), nil
	})
}

// TestPing times a round trip; an unknown instance is an error.
func TestPing(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	d, err := a.Ping(ctx, b.InstanceID())
	if err != nil || d <= 0 || d > time.Second {
		t.Errorf("Ping = %v, %v", d, err)
	}
	if _, err := a.Ping(ctx, peer.NewID()); !errors.Is(err, velo.ErrPeerUnknown) {
		t.Errorf("Ping of an unknown instance: %v, want ErrPeerUnknown", err)
	}
}

// counting is a handler "job" that counts its runs and answers after
// pause, or with err.
func counting(runs *atomic.Int64, pause time.Duration, err error) *velo.HandlerBuilder {
	return velo.UnaryHandler("job", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		runs.Add(1)
		if pause > 0 {
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, err
	})
}

// TestBalancerAvoidsTheSlowInstance: of three instances one 20× slower,
// at 16 calls in flight, LeastLoaded sends the slow one under 15% of the
// calls; RoundRobin sends it a third.
func TestBalancerAvoidsTheSlowInstance(t *testing.T) {
	const calls, inflight = 960, 16
	for _, bal := range []struct {
		name     string
		b        velo.Balancer
		min, max float64
	}{
		{"LeastLoaded", velo.LeastLoaded(), 0, 0.15},
		{"RoundRobin", velo.RoundRobin(), 0.30, 0.37},
	} {
		t.Run(bal.name, func(t *testing.T) {
			ctx := testCtx(t)
			d := discovery.NewMemory()
			var fast1, fast2, slow atomic.Int64
			instanceOf(t, d, "s", velo.Options{}, counting(&fast1, time.Millisecond, nil))
			instanceOf(t, d, "s", velo.Options{}, counting(&fast2, time.Millisecond, nil))
			instanceOf(t, d, "s", velo.Options{}, counting(&slow, 20*time.Millisecond, nil))
			c := build(t, velo.NewBuilder().Discovery(d).Options(velo.Options{Balancer: bal.b}))
			waitInstances(t, c, "s", "job", 3)
			start := time.Now()
			runConcurrently(t, calls, inflight, func(int) error {
				_, err := c.Unary("job").Service("s").Send(ctx)
				return err
			})
			share := float64(slow.Load()) / calls
			t.Logf("%s: slow instance took %.1f%% of %d calls (fast ones %d and %d) in %v",
				bal.name, 100*share, calls, fast1.Load(), fast2.Load(), time.Since(start).Round(time.Millisecond))
			if share < bal.min || share > bal.max {
				t.Errorf("%s sent the slow instance %.1f%% of the calls, want %.0f%%..%.0f%%", bal.name, 100*share, 100*bal.min, 100*bal.max)
			}
		})
	}
}

// runConcurrently runs f(0..n-1) with k at a time and fails the test on
// the first error.
func runConcurrently(t testing.TB, n, k int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for range k {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestHedgeCutsTheTail: with one of two instances taking 200 ms, hedged
// calls after 20 ms keep the p99 under 60 ms, and the slow instance sees
// the losing attempts cancelled; with the default balancer, and with
// round-robin (whose first picks here all land on the slow instance, as
// each hedge takes the next turn: the worst a balancer can do) and a
// retry budget that lets every call hedge.
func TestHedgeCutsTheTail(t *testing.T) {
	for _, c := range []struct {
		name string
		opts velo.Options
	}{
		{"LeastLoaded", velo.Options{}},
		{"RoundRobin", velo.Options{Balancer: velo.RoundRobin(), RetryBudget: velo.RetryBudget{Ratio: 1}}},
	} {
		t.Run(c.name, func(t *testing.T) { testHedge(t, c.opts) })
	}
}

func testHedge(t *testing.T, opts velo.Options) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	var cancelled, slowRuns, fastRuns atomic.Int64
	instanceOf(t, d, "h", velo.Options{}, velo.UnaryHandler("job", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		slowRuns.Add(1)
		select {
		case <-time.After(200 * time.Millisecond):
			return []byte("slow"), nil
		case <-ctx.Done():
			cancelled.Add(1)
			return nil, ctx.Err()
		}
	}))
	instanceOf(t, d, "h", velo.Options{}, counting(&fastRuns, time.Millisecond, nil))
	c := build(t, velo.NewBuilder().Discovery(d).Options(opts))
	waitInstances(t, c, "h", "job", 2)
	p99 := func(hedge time.Duration, n int) time.Duration {
		var took []time.Duration
		for range n {
			b := c.Unary("job").Service("h")
			if hedge > 0 {
				b = b.Hedge(hedge)
			}
			start := time.Now()
			if _, err := b.Send(ctx); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)*99/100]
	}
	hedged := p99(20*time.Millisecond, 200)
	runs := slowRuns.Load()
	if _, err := discoverytestEventually(func() error {
		if cancelled.Load() < runs {
			return errors.New("cancellations missing")
		}
		return nil
	}); err != nil {
		t.Errorf("the slow instance ran %d attempts and saw %d cancelled, want all: %v", runs, cancelled.Load(), err)
	}
	if runs == 0 {
		t.Error("no attempt went to the slow instance: the hedge was not exercised")
	}
	t.Logf("p99 with Hedge(20ms) %v over 200 calls; the slow instance ran %d first attempts, all %d cancelled; the fast one ran %d",
		hedged.Round(time.Millisecond), runs, cancelled.Load(), fastRuns.Load())
	if hedged >= 60*time.Millisecond {
		t.Errorf("hedged p99 %v, want under 60ms", hedged)
	}
}

// TestRetryOnlyWhatDidNotRun: a refusal before the handler ran is retried
// on another instance; a handler's error is not; an attempt that timed
// out is retried only when the call is idempotent.
func TestRetryOnlyWhatDidNotRun(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	var busyRuns, okRuns, failRuns, stallRuns atomic.Int64
	fail := errors.New("boom")
	instanceOf(t, d, "r", velo.Options{}, counting(&busyRuns, 0, velo.ErrBusy),
		velo.UnaryHandler("fail", func(context.Context, *velo.Context) ([]byte, error) { failRuns.Add(1); return nil, fail }),
		velo.UnaryHandler("stall", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
			stallRuns.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}))
	instanceOf(t, d, "r", velo.Options{}, counting(&okRuns, 0, nil),
		velo.UnaryHandler("fail", func(context.Context, *velo.Context) ([]byte, error) { failRuns.Add(1); return nil, fail }),
		velo.UnaryHandler("stall", func(context.Context, *velo.Context) ([]byte, error) { return nil, nil }))
	c := build(t, velo.NewBuilder().Discovery(d).Options(velo.Options{Balancer: velo.RoundRobin()}))
	waitInstances(t, c, "r", "stall", 2)
	retry := velo.RetryPolicy{Attempts: 3, Backoff: time.Millisecond}

	const n = 40
	for range n {
		if _, err := c.Unary("job").Service("r").Retry(retry).Send(ctx); err != nil {
			t.Fatalf("job: %v", err)
		}
	}
	// Each call tries the busy instance once at most: its retry goes to
	// the other.
	if busyRuns.Load() == 0 || busyRuns.Load() > n || okRuns.Load() != n {
		t.Errorf("job: the busy instance refused %d, the other ran %d; want 1..%d and %d", busyRuns.Load(), okRuns.Load(), n, n)
	}
	for range n {
		_, err := c.Unary("fail").Service("r").Retry(retry).Send(ctx)
		if !errors.Is(err, velo.ErrHandlerError) || velo.NotDelivered(err) {
			t.Fatalf("fail: %v, want a delivered handler error", err)
		}
	}
	if failRuns.Load() != n {
		t.Errorf("fail ran %d times for %d calls: a handler error was retried", failRuns.Load(), n)
	}

	short := velo.RetryPolicy{Attempts: 2, AttemptTimeout: 30 * time.Millisecond}
	var timedOut int
	for range 10 {
		_, err := c.Unary("stall").Service("r").Retry(short).Send(ctx)
		switch {
		case err == nil:
		case errors.Is(err, velo.ErrDeadlineExceeded) && !velo.NotDelivered(err):
			timedOut++
		default:
			t.Fatalf("stall, not idempotent: %v", err)
		}
		if _, err := c.Unary("stall").Service("r").Retry(short).Idempotent().Send(ctx); err != nil {
			t.Fatalf("stall, idempotent: %v", err)
		}
	}
	if timedOut == 0 {
		t.Error("no call that timed out on the stalling instance failed: was it retried without Idempotent?")
	}
}

// TestRetryBudgetBoundsRetries: against an instance that refuses
// everything, retries stay within the budget, not Attempts per call.
func TestRetryBudgetBoundsRetries(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	var runs atomic.Int64
	instanceOf(t, d, "busy", velo.Options{}, counting(&runs, 0, velo.ErrBusy))
	budget := velo.RetryBudget{Ratio: 0.1, MinPerSecond: 1}
	c := build(t, velo.NewBuilder().Discovery(d).Options(velo.Options{RetryBudget: budget}))
	waitInstances(t, c, "busy", "job", 1)
	const n = 200
	for range n {
		_, err := c.Unary("job").Service("busy").Retry(velo.RetryPolicy{Attempts: 10}).Send(ctx)
		if !errors.Is(err, velo.ErrBusy) {
			t.Fatalf("%v, want ErrBusy", err)
		}
	}
	// Ratio × calls, plus MinPerSecond for each second of the window.
	most := n + int64(budget.Ratio*n) + 10
	t.Logf("%d calls with up to 10 attempts each ran the handler %d times (budget: at most %d)", n, runs.Load(), most)
	if runs.Load() > most {
		t.Errorf("%d runs for %d calls, want at most %d", runs.Load(), n, most)
	}
}

// TestRetryDefaultPolicyFromOptions: Options.Retry applies to calls that
// set no policy, .Instance ones included; a call's own .Retry replaces it.
func TestRetryDefaultPolicyFromOptions(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	var runs atomic.Int64
	w := instanceOf(t, d, "busy", velo.Options{}, counting(&runs, 0, velo.ErrBusy))
	c := build(t, velo.NewBuilder().Discovery(d).Options(velo.Options{Retry: velo.RetryPolicy{Attempts: 3}}))
	waitInstances(t, c, "busy", "job", 1)
	if _, err := c.Unary("job").Instance(w.InstanceID()).Send(ctx); !errors.Is(err, velo.ErrBusy) || runs.Load() != 3 {
		t.Errorf("default policy: %v after %d runs, want ErrBusy after 3", err, runs.Load())
	}
	runs.Store(0)
	if _, err := c.Unary("job").Service("busy").Retry(velo.RetryPolicy{Attempts: 1}).Send(ctx); !errors.Is(err, velo.ErrBusy) || runs.Load() != 1 {
		t.Errorf("own policy: %v after %d runs, want ErrBusy after 1", err, runs.Load())
	}
}
