package transporttest

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
)

// Bounds of the suite. They are upper bounds on things that normally take
// milliseconds, never expected durations.
const (
	testTimeout = 30 * time.Second // one scenario, end to end
	failFast    = 5 * time.Second  // a call that must fail without hanging
	shutdownMax = 10 * time.Second // a messenger's Shutdown in cleanup
)

// Names of the handlers every instance serves.
const (
	hEcho   = "echo"   // Unary: returns its payload
	hReuse  = "reuse"  // Unary: returns its payload, whose memory velo reuses (ReusePayload)
	hAM     = "am"     // AM: reports its payload on instance.got
	hAdd    = "add"    // TypedUnary: addReq -> addResp
	hWhoami = "whoami" // Unary: returns the instance id
	hBlock  = "block"  // Unary: waits for its ctx or the test's release
	hSized  = "sized"  // Unary: returns as many zero bytes as its payload says (uint32)
	hSlow   = "slow"   // Unary: returns after slowFor, or when its ctx ends
)

const slowFor = 100 * time.Millisecond

type addReq struct{ A, B int }

type addResp struct{ Sum int }

// instance is one messenger of a scenario and what its handlers report.
type instance struct {
	m    *velo.Messenger
	id   peer.ID
	tr   transport.Transport // as made by Factory.New, for Kill
	tap  *tap
	name string // the transport's name

	maxPayload int // the messenger's Options.MaxPayload: the largest request or response frame it takes

	got     chan []byte        // payloads the "am" handler received
	started chan struct{}      // a "block" or "slow" handler began
	ended   chan handlerEnding // a "block" handler's ctx ended

	stopOnce sync.Once
	stopErr  error
}

// handlerEnding is what a "block" handler saw of its ctx.
type handlerEnding struct {
	err         error
	deadline    time.Time
	hasDeadline bool
}

// env is the shared state of one scenario.
type env struct {
	t       *testing.T
	f       Factory
	ctx     context.Context
	release chan struct{} // closed at cleanup: frees every blocked handler
	relOnce sync.Once
}

func newEnv(t *testing.T, f Factory) *env {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	e := &env{t: t, f: f, ctx: ctx, release: make(chan struct{})}
	t.Cleanup(cancel)
	return e
}

// start builds an instance on a transport from the factory, with id
// unless it is zero. Cleanup shuts it down; blocked handlers are released
// first.
func (e *env) start(id peer.ID) *instance {
	e.t.Helper()
	tr := e.f.New()
	in := &instance{
		tr:         tr,
		tap:        newTap(tr),
		name:       tr.Name(),
		got:        make(chan []byte, 1024),
		maxPayload: e.f.Options.MaxPayload,
		started:    make(chan struct{}, 1024),
		ended:      make(chan handlerEnding, 1024),
	}
	b := velo.NewBuilder().AddTransport(in.tap).Options(e.f.Options)
	if !id.IsZero() {
		b.InstanceID(id)
	}
	m, err := b.Build(e.ctx)
	if err != nil {
		e.t.Fatalf("Build: %v", err)
	}
	in.m, in.id = m, m.InstanceID()
	// Cleanups run last in first out: release the handlers, then shut down.
	e.t.Cleanup(func() {
		if err := in.stop(); err != nil {
			e.t.Errorf("Shutdown of %s: %v", in.id.Short(), err)
		}
	})
	e.t.Cleanup(func() { e.relOnce.Do(func() { close(e.release) }) })
	e.register(in)
	return in
}

// stop shuts the instance down, once.
func (in *instance) stop() error {
	in.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownMax)
		defer cancel()
		in.stopErr = in.m.Shutdown(ctx)
	})
	return in.stopErr
}

// addr is the instance's address on the transport under test.
func (in *instance) addr() string { return in.m.PeerInfo().Addresses[in.name] }

func (e *env) register(in *instance) {
	e.t.Helper()
	hs := []*velo.HandlerBuilder{
		velo.UnaryHandler(hEcho, func(_ context.Context, c *velo.Context) ([]byte, error) {
			return c.Payload, nil
		}),
		velo.UnaryHandler(hReuse, func(_ context.Context, c *velo.Context) ([]byte, error) {
			return c.Payload, nil
		}).ReusePayload(),
		velo.AMHandler(hAM, func(ctx context.Context, c *velo.Context) error {
			select {
			case in.got <- c.Payload:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}),
		velo.TypedUnaryHandler(hAdd, func(_ context.Context, c *velo.TypedContext[addReq]) (addResp, error) {
			return addResp{Sum: c.Input.A + c.Input.B}, nil
		}),
		velo.UnaryHandler(hWhoami, func(_ context.Context, c *velo.Context) ([]byte, error) {
			id := c.Msg.InstanceID()
			return id[:], nil
		}),
		velo.UnaryHandler(hBlock, func(ctx context.Context, _ *velo.Context) ([]byte, error) {
			in.started <- struct{}{}
			select {
			case <-ctx.Done():
				dl, ok := ctx.Deadline()
				in.ended <- handlerEnding{err: ctx.Err(), deadline: dl, hasDeadline: ok}
				return nil, ctx.Err()
			case <-e.release:
				return nil, errors.New("released by the test")
			}
		}),
		velo.UnaryHandler(hSized, func(_ context.Context, c *velo.Context) ([]byte, error) {
			if len(c.Payload) != 4 {
				return nil, errors.New("want a 4-byte size")
			}
			return make([]byte, binary.BigEndian.Uint32(c.Payload)), nil
		}),
		velo.UnaryHandler(hSlow, func(ctx context.Context, _ *velo.Context) ([]byte, error) {
			in.started <- struct{}{}
			t := time.NewTimer(slowFor)
			defer t.Stop()
			select {
			case <-t.C:
				return []byte("done"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
	}
	for _, h := range hs {
		if err := in.m.RegisterHandler(h.Build()); err != nil {
			e.t.Fatalf("RegisterHandler: %v", err)
		}
	}
}

// connect tells each instance about the others.
func (e *env) connect(ins ...*instance) {
	e.t.Helper()
	for _, a := range ins {
		for _, b := range ins {
			if a != b {
				if err := a.m.RegisterPeer(b.m.PeerInfo()); err != nil {
					e.t.Fatalf("RegisterPeer: %v", err)
				}
			}
		}
	}
}

// pair starts two instances that know each other.
func (e *env) pair() (a, b *instance) {
	e.t.Helper()
	a, b = e.start(peer.ID{}), e.start(peer.ID{})
	e.connect(a, b)
	return a, b
}

// maxPayload is the largest payload that a request from a to handler on
// b may carry: b's largest frame less the request's own bytes.
func maxPayload(b *instance, handler string) int {
	overhead := wire.RequestLen(&wire.Request{Kind: wire.KindUnary, Handler: handler}) - wire.PrefixLen
	return b.maxPayload - overhead
}

// maxResponse is the largest payload that a's Unary call may get back.
func maxResponse(a *instance) int {
	return a.maxPayload - (wire.ResponseLen(&wire.Response{}) - wire.PrefixLen)
}

// recv waits for a value on ch, failing the test after d.
func recv[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case v := <-ch:
		return v
	case <-tm.C:
		t.Fatalf("no %s within %v", what, d)
		panic("unreachable")
	}
}

// tap wraps a transport and reports the ends of its connections, so that
// a scenario can wait for a connection to be gone instead of sleeping.
type tap struct {
	transport.Transport
	mu     sync.Mutex
	closes int           // guarded by mu
	closed chan struct{} // receives one value per connection end
}

func newTap(tr transport.Transport) *tap {
	return &tap{Transport: tr, closed: make(chan struct{}, 1024)}
}

func (p *tap) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	return p.Transport.Listen(ctx, p.wrap(bind))
}

func (p *tap) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	return p.Transport.Dial(ctx, addr, p.wrap(bind))
}

func (p *tap) wrap(bind transport.Binder) transport.Binder {
	return func(c transport.Conn) transport.Handler { return &tapHandler{Handler: bind(c), p: p} }
}

// closeCount is how many connections of the transport have ended.
func (p *tap) closeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closes
}

type tapHandler struct {
	transport.Handler
	p *tap
}

func (h *tapHandler) Closed(reason error) {
	h.Handler.Closed(reason) // the messenger has forgotten the session when this returns
	h.p.mu.Lock()
	h.p.closes++
	h.p.mu.Unlock()
	select {
	case h.p.closed <- struct{}{}:
	default:
	}
}

// errIsOneOf reports whether err matches one of targets.
func errIsOneOf(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
