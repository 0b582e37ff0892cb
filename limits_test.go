package velo_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Limit tests: deadlines, cancellation, full mailboxes, frame and header
// limits.

// gate is a channel a test closes, once, to let blocked handlers go; it
// is also closed at cleanup so that no handler outlives its test.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

// newGate must be called after the messengers are made, so that its
// cleanup runs before their Shutdown.
func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// remoteFlag returns the Remote field of a *velo.Error, failing the test
// if err is not one.
func remoteFlag(t *testing.T, err error) bool {
	t.Helper()
	var ve *velo.Error
	if !errors.As(err, &ve) {
		t.Fatalf("%v (%T) is not a *velo.Error", err, err)
	}
	return ve.Remote
}

// TestLimitDeadlineExceeded: the caller's deadline travels; the caller
// gets ErrDeadlineExceeded (which is also context.DeadlineExceeded), and
// the handler's ctx carries the deadline and ends with DeadlineExceeded.
func TestLimitDeadlineExceeded(t *testing.T) {
	a, b := pair(t)
	type observed struct {
		hasDeadline bool
		left        time.Duration // deadline minus the handler's start
		err         error
	}
	obs := make(chan observed, 1)
	mustRegister(t, b, velo.UnaryHandler("wait", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		dl, ok := ctx.Deadline()
		left := time.Until(dl)
		<-ctx.Done()
		notify(obs, observed{ok, left, ctx.Err()})
		return nil, ctx.Err()
	}))
	tctx := testCtx(t)
	// Connect first, so that the 100 ms are not spent on the handshake.
	if _, err := a.ListHandlers(tctx, b.InstanceID()); err != nil {
		t.Fatal(err)
	}

	const timeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(tctx, timeout)
	defer cancel()
	_, err := a.Unary("wait").Instance(b.InstanceID()).Send(ctx)
	if !errors.Is(err, velo.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrDeadlineExceeded and context.DeadlineExceeded", err)
	}

	o := waitRecv(t, tctx, obs, "the handler to see its ctx end")
	if !o.hasDeadline {
		t.Error("the handler's ctx had no deadline")
	} else if o.left > timeout {
		t.Errorf("the handler's deadline was %v away when it started, more than the caller's %v", o.left, timeout)
	}
	if o.err != context.DeadlineExceeded {
		t.Errorf("the handler's ctx ended with %v, want context.DeadlineExceeded", o.err)
	}
}

// TestLimitCallerCancel: cancelling the caller's ctx fails the call with
// ErrCanceled (also context.Canceled) and, through a cancel frame,
// cancels the handler's ctx on the remote side.
func TestLimitCallerCancel(t *testing.T) {
	a, b := pair(t)
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	mustRegister(t, b, velo.UnaryHandler("wait", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		notify(started, struct{}{})
		<-ctx.Done()
		notify(ended, ctx.Err())
		return nil, ctx.Err()
	}))
	tctx := testCtx(t)
	ctx, cancel := context.WithCancel(tctx)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := a.Unary("wait").Instance(b.InstanceID()).Send(ctx)
		res <- err
	}()
	waitRecv(t, tctx, started, "the handler to start")
	cancel()

	err := waitRecv(t, tctx, res, "the cancelled call to return")
	if !errors.Is(err, velo.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want ErrCanceled and context.Canceled", err)
	}
	// The handler's ctx has the caller's 30 s deadline; only the cancel
	// frame can end it now, and the connection stays up.
	if herr := waitRecv(t, tctx, ended, "the handler's ctx to be cancelled"); herr != context.Canceled {
		t.Errorf("the handler's ctx ended with %v, want context.Canceled", herr)
	}
	if _, err := a.ListHandlers(tctx, b.InstanceID()); err != nil {
		t.Errorf("call after the cancel: %v", err)
	}
}

// TestLimitBusyWhenRejectingMailboxFull: a handler built to reject when
// full answers a request that does not fit with ErrBusy at once, while the
// request that fills it is still running.
func TestLimitBusyWhenRejectingMailboxFull(t *testing.T) {
	a, b := pair(t)
	release := newGate(t)
	started := make(chan struct{}, 2)
	mustRegister(t, b, velo.UnaryHandler("slow", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		notify(started, struct{}{})
		select {
		case <-release.ch:
			return []byte("done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}).Mailbox(1).RejectWhenFull())
	ctx := testCtx(t)

	type outcome struct {
		got []byte
		err error
	}
	first := make(chan outcome, 1)
	go func() {
		got, err := a.Unary("slow").Instance(b.InstanceID()).Send(ctx)
		first <- outcome{got, err}
	}()
	waitRecv(t, ctx, started, "the first call's handler to start")

	_, err := a.Unary("slow").Instance(b.InstanceID()).Send(ctx)
	if !errors.Is(err, velo.ErrBusy) {
		t.Fatalf("second call while the mailbox is full: err = %v, want ErrBusy", err)
	}
	if !remoteFlag(t, err) {
		t.Errorf("busy error %v is not marked Remote", err)
	}
	select {
	case o := <-first:
		t.Fatalf("first call finished before its handler was released: %q, %v", o.got, o.err)
	default:
	}

	release.open()
	if o := waitRecv(t, ctx, first, "the first call"); o.err != nil || string(o.got) != "done" {
		t.Fatalf("first call = %q, %v", o.got, o.err)
	}
}

// TestLimitRejectingMailboxAcceptsSequentialCaller: a caller that waits
// for each answer before the next call never has more than one message in
// a Mailbox(1) handler, so it is never refused with ErrBusy.
func TestLimitRejectingMailboxAcceptsSequentialCaller(t *testing.T) {
	a, b := pair(t)
	mustRegister(t, b, velo.UnaryHandler("one", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Mailbox(1).RejectWhenFull())
	ctx := testCtx(t)
	const calls = 300
	for i := range calls {
		p := []byte{byte(i), byte(i >> 8)}
		got, err := a.Unary("one").RawPayload(p).Instance(b.InstanceID()).Send(ctx)
		if err != nil {
			t.Fatalf("sequential call %d of %d: %v", i+1, calls, err)
		}
		if string(got) != string(p) {
			t.Fatalf("sequential call %d answered %x, want %x", i+1, got, p)
		}
	}
}

// TestLimitFullMailboxBlocksByDefault: with the default Block policy a
// request that finds the mailbox full is not refused: it waits, and
// completes once the running one is released.
func TestLimitFullMailboxBlocksByDefault(t *testing.T) {
	arrived := make(chan uint64, 4)
	a := newMessenger(t, velo.Options{})
	b := newMessenger(t, velo.Options{}, &tappedTransport{
		Transport: tcp.New(tcp.Options{}),
		onFrame: func(f frameInfo) {
			if f.typ == wire.TypeRequest && f.handler == "queued" {
				notify(arrived, f.id)
			}
		},
	})
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	release := newGate(t)
	var running, peak atomic.Int32
	order := make(chan string, 2)
	mustRegister(t, b, velo.UnaryHandler("queued", func(ctx context.Context, c *velo.Context) ([]byte, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		order <- string(c.Payload)
		if string(c.Payload) == "first" {
			select {
			case <-release.ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return c.Payload, nil
	}).Mailbox(1))
	ctx := testCtx(t)

	type outcome struct {
		got []byte
		err error
	}
	call := func(p string) <-chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			got, err := a.Unary("queued").RawPayload([]byte(p)).Instance(b.InstanceID()).Send(ctx)
			ch <- outcome{got, err}
		}()
		return ch
	}
	first := call("first")
	if got := waitRecv(t, ctx, order, "the first handler to start"); got != "first" {
		t.Fatalf("first handler run got %q", got)
	}
	waitRecv(t, ctx, arrived, "the first request to reach b")
	second := call("second")
	// The second request has reached b's receive path while the mailbox is
	// full: a rejecting policy would answer it now; Block makes it wait.
	waitRecv(t, ctx, arrived, "the second request to reach b")
	select {
	case o := <-second:
		t.Fatalf("second call returned while the mailbox was full: %q, %v", o.got, o.err)
	default:
	}

	release.open()
	for name, ch := range map[string]<-chan outcome{"first": first, "second": second} {
		if o := waitRecv(t, ctx, ch, name+" call"); o.err != nil || string(o.got) != name {
			t.Errorf("%s call = %q, %v", name, o.got, o.err)
		}
	}
	if got := waitRecv(t, ctx, order, "the second handler to start"); got != "second" {
		t.Errorf("second handler run got %q", got)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("%d handler runs at once with Mailbox(1)", p)
	}
}

// TestLimitPayloadTooLarge: with 64 KiB frames, a 100 KiB request is
// refused at once with ErrPayloadTooLarge before it is sent, a 100 KiB
// response comes back as a remote ErrPayloadTooLarge, and the connection
// survives both.
func TestLimitPayloadTooLarge(t *testing.T) {
	const maxFrame = 1 << 16
	closed := make(chan error, 4)
	// MaxPayload is the limit a caller meets; the frame limit is the
	// same here, so that a frame over it would close the connection.
	a := newMessenger(t, velo.Options{MaxPayload: maxFrame}, &tappedTransport{
		Transport: tcp.New(tcp.Options{MaxFrame: maxFrame}),
		onClosed:  func(err error) { notify(closed, err) },
	})
	b := newMessenger(t, velo.Options{MaxPayload: maxFrame}, tcp.New(tcp.Options{MaxFrame: maxFrame}))
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	mustRegister(t, b, velo.UnaryHandler("big", func(context.Context, *velo.Context) ([]byte, error) {
		return make([]byte, 100<<10), nil
	}))
	mustRegister(t, b, velo.AMHandler("sink", func(context.Context, *velo.Context) error { return nil }))
	ctx := testCtx(t)
	small := func(when string) {
		t.Helper()
		if got, err := a.Unary("echo").RawPayload([]byte("small")).Instance(b.InstanceID()).Send(ctx); err != nil || string(got) != "small" {
			t.Fatalf("small call %s = %q, %v", when, got, err)
		}
	}
	tooLarge := func(what string, err error, remote bool) {
		t.Helper()
		if !errors.Is(err, velo.ErrPayloadTooLarge) {
			t.Fatalf("%s: err = %v, want ErrPayloadTooLarge", what, err)
		}
		if r := remoteFlag(t, err); r != remote {
			t.Errorf("%s: Remote = %v, want %v (%v)", what, r, remote, err)
		}
	}

	big := make([]byte, 100<<10)
	_, err := a.Unary("echo").RawPayload(big).Instance(b.InstanceID()).Send(ctx)
	tooLarge("Unary with a 100 KiB payload", err, false)
	small("after the refused request")
	err = a.AMSend("sink").RawPayload(big).Instance(b.InstanceID()).Send(ctx)
	tooLarge("AMSend with a 100 KiB payload", err, false)
	err = a.AMSync("sink").RawPayload(big).Instance(b.InstanceID()).Send(ctx)
	tooLarge("AMSync with a 100 KiB payload", err, false)

	_, err = a.Unary("big").Instance(b.InstanceID()).Send(ctx)
	tooLarge("handler answering 100 KiB", err, true)
	small("after the refused response")

	select {
	case err := <-closed:
		t.Errorf("a connection closed during the test: %v", err)
	default:
	}
}

// TestLimitHeaderLimits: the caller's header limits refuse a request
// locally with ErrBadRequest; requests within them go through.
func TestLimitHeaderLimits(t *testing.T) {
	a := newMessenger(t, velo.Options{MaxHeaders: 2, MaxHeaderBytes: 64})
	b := newMessenger(t, velo.Options{})
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, b, velo.UnaryHandler("count", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return []byte{byte(len(c.Headers))}, nil
	}))
	ctx := testCtx(t)
	req := a.Unary("count").Instance(b.InstanceID())

	two := req.Header("k1", "v1").Header("k2", "v2")
	if got, err := two.Send(ctx); err != nil || len(got) != 1 || got[0] != 2 {
		t.Fatalf("request with 2 headers = %v, %v; want the handler to see 2", got, err)
	}
	refused := map[string]velo.UnaryBuilder{
		"3 headers (MaxHeaders 2)":             two.Header("k3", "v3"),
		"100 header bytes (MaxHeaderBytes 64)": req.Header("k", strings.Repeat("v", 99)),
	}
	for what, r := range refused {
		_, err := r.Send(ctx)
		if !errors.Is(err, velo.ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", what, err)
			continue
		}
		if remoteFlag(t, err) {
			t.Errorf("%s: refused by the remote side, want a local refusal: %v", what, err)
		}
	}
	if got, err := two.Send(ctx); err != nil || len(got) != 1 || got[0] != 2 {
		t.Fatalf("request with 2 headers afterwards = %v, %v", got, err)
	}
}

// TestLimitMaxFrameAboveDefault: a transport's MaxFrame is the frame
// limit, also above the 16 MiB default: with 64 MiB on both sides a
// 24 MiB payload goes both ways, in one frame; a peer whose MaxPayload is
// 16 MiB refuses it.
func TestLimitMaxFrameAboveDefault(t *testing.T) {
	const maxFrame = 64 << 20
	a := newMessenger(t, velo.Options{}, tcp.New(tcp.Options{MaxFrame: maxFrame}))
	b := newMessenger(t, velo.Options{}, tcp.New(tcp.Options{MaxFrame: maxFrame}))
	c := newMessenger(t, velo.Options{MaxPayload: 16 << 20}, tcp.New(tcp.Options{}))
	for _, m := range []*velo.Messenger{b, c} {
		if err := a.RegisterPeer(m.PeerInfo()); err != nil {
			t.Fatal(err)
		}
		mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
			return c.Payload, nil
		}))
	}
	ctx := testCtx(t)
	big := make([]byte, 24<<20)
	for i := range big {
		big[i] = byte(i >> 10)
	}
	got, err := a.Unary("echo").RawPayload(big).Instance(b.InstanceID()).Send(ctx)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("echo of 24 MiB with 64 MiB frames: %d bytes, %v", len(got), err)
	}
	if _, err := a.Unary("echo").RawPayload(big).Instance(c.InstanceID()).Send(ctx); !errors.Is(err, velo.ErrPayloadTooLarge) {
		t.Fatalf("echo of 24 MiB to a peer with MaxPayload 16 MiB: %v, want ErrPayloadTooLarge", err)
	}
}
