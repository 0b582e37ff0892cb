package velo_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// TestInterceptorsOrderAndChange: client and server interceptors run in
// the order given, outermost first, for every pattern and the typed form;
// a client interceptor's header reaches the handler and a server
// interceptor's result reaches the caller.
func TestInterceptorsOrderAndChange(t *testing.T) {
	ctx := testCtx(t)
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	client := func(name string) velo.ClientInterceptor {
		return func(ctx context.Context, c *velo.Call, next func(context.Context, *velo.Call) ([]byte, error)) ([]byte, error) {
			note("client " + name + " " + c.Pattern.String() + " " + c.Handler)
			h := maps.Clone(c.Headers)
			if h == nil {
				h = map[string]string{}
			}
			h["via"] += name
			c.Headers = h
			return next(ctx, c)
		}
	}
	server := func(name string) velo.ServerInterceptor {
		return func(ctx context.Context, c *velo.Context, next func(context.Context, *velo.Context) ([]byte, error)) ([]byte, error) {
			note("server " + name + " " + c.Handler)
			out, err := next(ctx, c)
			if c.Handler == "via" && err == nil {
				out = append(out, name...)
			}
			return out, err
		}
	}
	var ran atomic.Int64
	b := build(t, velo.NewBuilder().ServerInterceptor(server("1"), server("2")).
		Handle(velo.UnaryHandler("via", func(_ context.Context, c *velo.Context) ([]byte, error) {
			ran.Add(1)
			return []byte(c.Headers["via"] + ">"), nil
		}).Build(),
			velo.AMHandler("one-way", func(context.Context, *velo.Context) error { ran.Add(1); return nil }).Build(),
			velo.TypedUnaryHandler("typed", func(_ context.Context, c *velo.TypedContext[int]) (int, error) {
				return c.Input * 2, nil
			}).Build()))
	a := build(t, velo.NewBuilder().ClientInterceptor(client("A"), client("B")))
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	got, err := a.Unary("via").Instance(b.InstanceID()).Send(ctx)
	if err != nil || string(got) != "AB>21" {
		t.Errorf("Unary through the interceptors = %q, %v; want %q", got, err, "AB>21")
	}
	if want := []string{"client A Unary via", "client B Unary via", "server 1 via", "server 2 via"}; !slices.Equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
	order = nil
	if err := a.AMSync("one-way").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := velo.TypedUnary[int](a, "typed").Payload(21).Instance(b.InstanceID()).Send(ctx); err != nil || n != 42 {
		t.Errorf("typed through the interceptors: %d, %v", n, err)
	}
	if err := a.AMSend("one-way").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"client A AMSync one-way", "client B AMSync one-way", "server 1 one-way", "server 2 one-way",
		"client A Unary typed", "client B Unary typed", "server 1 typed", "server 2 typed",
		"client A AMSend one-way", "client B AMSend one-way"}
	if _, err := discoverytestEventually(func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(order) < len(want)+2 {
			return errors.New("the AMSend has not run yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order[:len(want)], want) || !slices.Equal(order[len(want):], []string{"server 1 one-way", "server 2 one-way"}) {
		t.Errorf("order %q", order)
	}
	// velo's own calls are not intercepted.
	for _, o := range order {
		if strings.Contains(o, " _") {
			t.Errorf("a reserved handler was intercepted: %q", o)
		}
	}
}

// TestInterceptorsRefuse: a client interceptor that refuses sends
// nothing; a server interceptor that refuses keeps the handler from
// running, and its velo error reaches the caller with its code.
func TestInterceptorsRefuse(t *testing.T) {
	ctx := testCtx(t)
	var ran atomic.Int64
	b := build(t, velo.NewBuilder().
		ServerInterceptor(func(ctx context.Context, c *velo.Context, next func(context.Context, *velo.Context) ([]byte, error)) ([]byte, error) {
			if c.Headers["token"] != "ok" {
				return nil, velo.ErrPermissionDenied
			}
			return next(ctx, c)
		}).
		Handle(velo.UnaryHandler("guarded", func(context.Context, *velo.Context) ([]byte, error) {
			ran.Add(1)
			return []byte("in"), nil
		}).Build()))
	var sent atomic.Int64
	a := build(t, velo.NewBuilder().ClientInterceptor(
		func(ctx context.Context, c *velo.Call, next func(context.Context, *velo.Call) ([]byte, error)) ([]byte, error) {
			if c.Headers["block"] == "yes" {
				return nil, velo.ErrBadRequest
			}
			sent.Add(1)
			return next(ctx, c)
		}))
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unary("guarded").Header("block", "yes").Instance(b.InstanceID()).Send(ctx); !errors.Is(err, velo.ErrBadRequest) || sent.Load() != 0 {
		t.Errorf("refused by the client interceptor: %v (sent %d)", err, sent.Load())
	}
	if _, err := a.Unary("guarded").Instance(b.InstanceID()).Send(ctx); !errors.Is(err, velo.ErrPermissionDenied) || ran.Load() != 0 {
		t.Errorf("refused by the server interceptor: %v (the handler ran %d times)", err, ran.Load())
	}
	if got, err := a.Unary("guarded").Header("token", "ok").Instance(b.InstanceID()).Send(ctx); err != nil || string(got) != "in" {
		t.Errorf("allowed: %q, %v", got, err)
	}
}

// TestClientInterceptorAroundRouting: for a routed call the interceptor
// sees no target, and next picks the instance; a time taken around next
// covers the whole call, retries included.
func TestClientInterceptorAroundRouting(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	instanceOf(t, d, "r", velo.Options{}, idHandler())
	var targets []peer.ID
	var took time.Duration
	c := build(t, velo.NewBuilder().Discovery(d).ClientInterceptor(
		func(ctx context.Context, call *velo.Call, next func(context.Context, *velo.Call) ([]byte, error)) ([]byte, error) {
			targets = append(targets, call.Target)
			start := time.Now()
			defer func() { took = time.Since(start) }()
			return next(ctx, call)
		}))
	waitInstances(t, c, "r", "id", 1)
	if _, err := velo.TypedUnary[peer.ID](c, "id").Service("r").Send(ctx); err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || !targets[0].IsZero() || took <= 0 {
		t.Errorf("interceptor saw targets %v, timed %v; want one zero target and a duration", targets, took)
	}
}
