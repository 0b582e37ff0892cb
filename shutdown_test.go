package velo_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
)

// Shutdown tests: draining, cutting handlers short, refusing afterwards,
// failing one's own calls, and leaving no goroutine behind.

// buildOwned starts a messenger whose Shutdown the test checks itself.
// (newMessenger's cleanup would fail the test on the second Shutdown
// returning the first one's error.) A cleanup still shuts it down in case
// the test stops early.
func buildOwned(t *testing.T, opts velo.Options) *velo.Messenger {
	t.Helper()
	m, err := velo.NewBuilder().Options(opts).Build(context.Background())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m
}

// introduce makes a and b know each other.
func introduce(t *testing.T, a, b *velo.Messenger) {
	t.Helper()
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterPeer(a.PeerInfo()); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownDrainsRunningAndRefusesNew: while B shuts down, a new
// request to it is answered with ErrShuttingDown, the request it is
// running completes normally, and Shutdown then returns nil.
func TestShutdownDrainsRunningAndRefusesNew(t *testing.T) {
	a, b := pair(t)
	release := newGate(t)
	started := make(chan struct{}, 1)
	mustRegister(t, b, velo.UnaryHandler("slow", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		notify(started, struct{}{})
		select {
		case <-release.ch:
			return []byte("done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	mustRegister(t, b, velo.UnaryHandler("other", func(context.Context, *velo.Context) ([]byte, error) {
		return []byte("ok"), nil
	}))
	ctx := testCtx(t)

	type outcome struct {
		got []byte
		err error
	}
	slow := make(chan outcome, 1)
	go func() {
		got, err := a.Unary("slow").Instance(b.InstanceID()).Send(ctx)
		slow <- outcome{got, err}
	}()
	waitRecv(t, ctx, started, "the slow handler to start")

	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(ctx) }()

	// b refuses new requests from the moment it starts draining; until
	// then "other" still answers. The first refusal must say why.
	var err error
	calls := 0
	for err == nil {
		_, err = a.Unary("other").Instance(b.InstanceID()).Send(ctx)
		calls++
	}
	if !errors.Is(err, velo.ErrShuttingDown) {
		t.Fatalf("call %d to a draining instance: err = %v, want ErrShuttingDown", calls, err)
	}
	if !remoteFlag(t, err) {
		t.Errorf("refusal %v is not marked Remote", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a handler was still running", err)
	case o := <-slow:
		t.Fatalf("slow call returned %q, %v before its handler was released", o.got, o.err)
	default:
	}

	release.open()
	if o := waitRecv(t, ctx, slow, "the in-flight call"); o.err != nil || string(o.got) != "done" {
		t.Errorf("in-flight call during drain = %q, %v; want %q", o.got, o.err, "done")
	}
	if err := waitRecv(t, ctx, shut, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

// TestShutdownExpiredCtxCutsHandlersShort: Shutdown with a ctx that has
// already ended cancels the running handler's ctx, returns the ctx error,
// and the caller gets an error instead of hanging.
func TestShutdownExpiredCtxCutsHandlersShort(t *testing.T) {
	a := newMessenger(t, velo.Options{})
	b := buildOwned(t, velo.Options{})
	introduce(t, a, b)
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	mustRegister(t, b, velo.UnaryHandler("stuck", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		notify(started, struct{}{})
		<-ctx.Done()
		notify(ended, ctx.Err())
		return nil, ctx.Err()
	}))
	ctx := testCtx(t)
	res := make(chan error, 1)
	go func() {
		_, err := a.Unary("stuck").Instance(b.InstanceID()).Send(ctx)
		res <- err
	}()
	waitRecv(t, ctx, started, "the stuck handler to start")

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err := b.Shutdown(expired)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an expired ctx = %v, want an error matching context.DeadlineExceeded", err)
	}
	// The handler's ctx carries the caller's 30 s deadline: only the
	// shutdown can have ended it.
	if herr := waitRecv(t, ctx, ended, "the handler's ctx to be cancelled"); herr != context.Canceled {
		t.Errorf("the handler's ctx ended with %v, want context.Canceled", herr)
	}
	cerr := waitRecv(t, ctx, res, "the caller of the cut handler")
	if cerr == nil {
		t.Error("the caller of a handler cut short got no error")
	} else if ctx.Err() != nil {
		t.Errorf("the caller only returned when its own ctx ended: %v", cerr)
	}
	t.Logf("caller got: %v", cerr)

	if again := b.Shutdown(context.Background()); again != err {
		t.Errorf("second Shutdown = %v, want the first one's result %v", again, err)
	}
}

// TestShutdownThenEverythingRefused: after Shutdown every send fails with
// ErrShuttingDown, RegisterHandler fails, and Shutdown again returns the
// same result.
func TestShutdownThenEverythingRefused(t *testing.T) {
	a, b := pair(t)
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	ctx := testCtx(t)
	if _, err := a.Unary("echo").RawPayload([]byte("x")).Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	first := a.Shutdown(ctx)
	if first != nil {
		t.Fatalf("Shutdown = %v", first)
	}

	id := b.InstanceID()
	sends := map[string]func() error{
		"Unary":  func() error { _, err := a.Unary("echo").Instance(id).Send(ctx); return err },
		"AMSend": func() error { return a.AMSend("echo").Instance(id).Send(ctx) },
		"AMSync": func() error { return a.AMSync("echo").Instance(id).Send(ctx) },
		"TypedUnary": func() error {
			_, err := velo.TypedUnary[string](a, "echo").Payload("x").Instance(id).Send(ctx)
			return err
		},
		"ListHandlers": func() error { _, err := a.ListHandlers(ctx, id); return err },
		"Unary to an unknown instance": func() error {
			_, err := a.Unary("echo").Instance(peer.NewID()).Send(ctx)
			return err
		},
		"Unary to itself": func() error { _, err := a.Unary("_list_handlers").Instance(a.InstanceID()).Send(ctx); return err },
	}
	for name, send := range sends {
		if err := send(); !errors.Is(err, velo.ErrShuttingDown) {
			t.Errorf("%s after Shutdown: err = %v, want ErrShuttingDown", name, err)
		}
	}
	err := a.RegisterHandler(velo.UnaryHandler("late", func(context.Context, *velo.Context) ([]byte, error) {
		return nil, nil
	}).Build())
	if err == nil {
		t.Error("RegisterHandler after Shutdown succeeded")
	} else if !errors.Is(err, velo.ErrShuttingDown) {
		t.Errorf("RegisterHandler after Shutdown: err = %v, want ErrShuttingDown", err)
	}
	if again := a.Shutdown(ctx); again != first {
		t.Errorf("second Shutdown = %v, want %v", again, first)
	}
}

// TestShutdownFailsOwnCallsInFlight: calls that A has in flight when A
// shuts down fail with ErrShuttingDown, and the handlers running them on
// B see their ctx cancelled when the connection goes. The scenario runs
// several times over fresh pairs, because how the connection ends (A closes
// it, or B closes it first in answer to A's goaway) varies from run to run
// and the outcome must not.
func TestShutdownFailsOwnCallsInFlight(t *testing.T) {
	for round := range 10 {
		if !shutdownWithCallsInFlight(t, round) {
			return
		}
	}
}

func shutdownWithCallsInFlight(t *testing.T, round int) (ok bool) {
	t.Helper()
	a, b := pair(t)
	const n = 3
	started := make(chan struct{}, n)
	ended := make(chan error, n)
	stuck := func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}
	mustRegister(t, b, velo.UnaryHandler("stuck", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		return nil, stuck(ctx)
	}))
	mustRegister(t, b, velo.AMHandler("stuck-am", func(ctx context.Context, _ *velo.Context) error {
		return stuck(ctx)
	}))
	mustRegister(t, b, velo.TypedUnaryHandler("stuck-typed", func(ctx context.Context, _ *velo.TypedContext[int]) (int, error) {
		return 0, stuck(ctx)
	}))
	ctx := testCtx(t)
	id := b.InstanceID()
	res := make(chan error, n)
	go func() { _, err := a.Unary("stuck").Instance(id).Send(ctx); res <- fmt.Errorf("Unary: %w", err) }()
	go func() { res <- fmt.Errorf("AMSync: %w", a.AMSync("stuck-am").Instance(id).Send(ctx)) }()
	go func() {
		_, err := velo.TypedUnary[int](a, "stuck-typed").Payload(1).Instance(id).Send(ctx)
		res <- fmt.Errorf("TypedUnary: %w", err)
	}()
	for range n {
		waitRecv(t, ctx, started, "the stuck handlers to start")
	}

	ok = true
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("round %d: Shutdown = %v", round, err)
		ok = false
	}
	for range n {
		err := waitRecv(t, ctx, res, "a's calls in flight to fail")
		if !errors.Is(err, velo.ErrShuttingDown) {
			t.Errorf("round %d: %v; want ErrShuttingDown", round, err)
			ok = false
		}
	}
	for range n {
		if herr := waitRecv(t, ctx, ended, "b's handlers to be cancelled"); herr != context.Canceled {
			t.Errorf("round %d: b's handler ctx ended with %v, want context.Canceled", round, herr)
			ok = false
		}
	}
	return ok
}

// TestShutdownLeavesNoGoroutine: twenty pairs exchange every kind of
// message, some with a call still in flight at shutdown, and once all are
// shut down no goroutine is left.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	ctx := testCtx(t)
	for i := range 20 {
		a := buildOwned(t, velo.Options{})
		b := buildOwned(t, velo.Options{})
		introduce(t, a, b)
		for _, m := range []*velo.Messenger{a, b} {
			mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
				return c.Payload, nil
			}))
		}
		noted := make(chan struct{}, 2)
		mustRegister(t, b, velo.AMHandler("note", func(context.Context, *velo.Context) error {
			noted <- struct{}{}
			return nil
		}))
		mustRegister(t, b, velo.TypedUnaryHandler("double", func(_ context.Context, c *velo.TypedContext[int]) (int, error) {
			return 2 * c.Input, nil
		}).Ordered())
		started := make(chan struct{}, 1)
		mustRegister(t, b, velo.UnaryHandler("stuck", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}))

		if got, err := a.Unary("echo").RawPayload([]byte("a>b")).Instance(b.InstanceID()).Send(ctx); err != nil || string(got) != "a>b" {
			t.Fatalf("pair %d: a→b echo = %q, %v", i, got, err)
		}
		if got, err := b.Unary("echo").RawPayload([]byte("b>a")).Instance(a.InstanceID()).Send(ctx); err != nil || string(got) != "b>a" {
			t.Fatalf("pair %d: b→a echo = %q, %v", i, got, err)
		}
		if err := a.AMSend("note").Instance(b.InstanceID()).Send(ctx); err != nil {
			t.Fatalf("pair %d: AMSend: %v", i, err)
		}
		if err := a.AMSync("note").Instance(b.InstanceID()).Send(ctx); err != nil {
			t.Fatalf("pair %d: AMSync: %v", i, err)
		}
		waitRecv(t, ctx, noted, "the AMSend handler")
		waitRecv(t, ctx, noted, "the AMSync handler")
		if got, err := velo.TypedUnary[int](a, "double").Payload(i).Instance(b.InstanceID()).Send(ctx); err != nil || got != 2*i {
			t.Fatalf("pair %d: TypedUnary = %d, %v", i, got, err)
		}

		inflight := make(chan error, 1)
		if i%2 == 1 {
			// Shut down with a call in flight: a goes first, which fails
			// the call and cancels the handler on b.
			go func() {
				_, err := a.Unary("stuck").Instance(b.InstanceID()).Send(ctx)
				inflight <- err
			}()
			waitRecv(t, ctx, started, "the stuck handler to start")
		}
		for _, m := range []*velo.Messenger{a, b} {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := m.Shutdown(sctx)
			cancel()
			if err != nil {
				t.Fatalf("pair %d: Shutdown: %v", i, err)
			}
		}
		if i%2 == 1 {
			// Which error it gets is TestShutdownFailsOwnCallsInFlight's
			// business; here it must merely end.
			if err := waitRecv(t, ctx, inflight, "the call in flight at shutdown"); err == nil {
				t.Errorf("pair %d: call in flight at shutdown succeeded", i)
			}
		}
	}
	goleak.VerifyNone(t)
}
