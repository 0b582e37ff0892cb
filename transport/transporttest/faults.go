package transporttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
)

// callResult is what a call made on a goroutine of the test returned.
type callResult struct {
	payload []byte
	err     error
	took    time.Duration
}

// goCall runs a Unary call on a goroutine and delivers its result.
func goCall(ctx context.Context, from, to *instance, handler string) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		start := time.Now()
		p, err := from.m.Unary(handler).Instance(to.id).Send(ctx)
		ch <- callResult{p, err, time.Since(start)}
	}()
	return ch
}

// testPeerKilled: the callee's transport dies under a call. The call
// fails with ErrPeerLost (or ErrShuttingDown) without waiting for its
// deadline or for keepalive, the handler's ctx is cancelled on the
// callee's side, and a new call fails at once instead of hanging.
func testPeerKilled(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(e.ctx); err != nil {
		t.Fatalf("first call: %v", err)
	}
	res := goCall(e.ctx, a, b, hBlock)
	recv(t, b.started, failFast, "start of the handler")
	f.Kill(b.tr)

	r := recv(t, res, failFast, "end of the call in flight")
	if !errIsOneOf(r.err, velo.ErrPeerLost, velo.ErrShuttingDown) {
		t.Errorf("call in flight when the peer died: %v, want ErrPeerLost or ErrShuttingDown", r.err)
	}
	if end := recv(t, b.ended, failFast, "cancellation of the handler's ctx"); !errors.Is(end.err, context.Canceled) {
		t.Errorf("handler's ctx ended with %v, want context.Canceled", end.err)
	}

	ctx, cancel := context.WithTimeout(e.ctx, failFast)
	defer cancel()
	start := time.Now()
	_, err := a.m.Unary(hEcho).Instance(b.id).Send(ctx)
	if err == nil {
		t.Fatal("a call to the dead peer succeeded")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call to the dead peer hung until its deadline (%v): the dial must fail fast", time.Since(start))
	}
}

// testPeerRestarted: an instance comes back with the same id at a new
// address; once it is registered again, the next call reaches it.
func testPeerRestarted(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(e.ctx); err != nil {
		t.Fatalf("first call: %v", err)
	}
	oldAddr := b.addr()
	if err := b.stop(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Wait until a has seen the connection end, so that the next call
	// must open a new one.
	recv(t, a.tap.closed, failFast, "end of a's connection to the stopped peer")

	b2 := e.start(b.id)
	if b2.addr() == oldAddr {
		t.Logf("the restarted instance listens at the same address %q", oldAddr)
	}
	if err := a.m.RegisterPeer(b2.m.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	got, err := a.m.Unary(hWhoami).Instance(b.id).Send(e.ctx)
	if err != nil {
		t.Fatalf("first call after the restart: %v", err)
	}
	if peer.ID(got) != b.id {
		t.Errorf("answered by %x, want %s", got, b.id)
	}
	// And the restarted instance reaches a over the connection a opened.
	if _, err := b2.m.Unary(hEcho).Instance(a.id).Send(e.ctx); err != nil {
		t.Errorf("call back from the restarted instance: %v", err)
	}
}

// testDeadline: the caller's deadline reaches the handler's ctx, and the
// handler's ctx ends when it passes.
func testDeadline(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	callerDL, _ := ctx.Deadline()
	_, err := a.m.Unary(hBlock).Instance(b.id).Send(ctx)
	if !errors.Is(err, velo.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call past its deadline: %v, want ErrDeadlineExceeded", err)
	}
	end := recv(t, b.ended, failFast, "end of the handler's ctx")
	if !end.hasDeadline {
		t.Fatal("the handler's ctx has no deadline")
	}
	// The deadline travels as a relative duration, so the clocks agree up
	// to the transit time; allow a generous bound either way.
	if d := end.deadline.Sub(callerDL); d > time.Second || d < -time.Second {
		t.Errorf("handler deadline is %v from the caller's", d)
	}
	// Whichever comes first ends it: the deadline or the cancel that the
	// caller sends when its own deadline passes.
	if !errIsOneOf(end.err, context.DeadlineExceeded, context.Canceled) {
		t.Errorf("handler's ctx ended with %v, want context.DeadlineExceeded", end.err)
	}
}

// testCancel: cancelling the caller cancels the handler's ctx.
func testCancel(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	// No deadline on this call (e.ctx has one), so that the handler's
	// ctx can only end by the cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := goCall(ctx, a, b, hBlock)
	recv(t, b.started, failFast, "start of the handler")
	cancel()
	r := recv(t, res, failFast, "end of the cancelled call")
	if !errors.Is(r.err, velo.ErrCanceled) || !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled call: %v, want ErrCanceled", r.err)
	}
	end := recv(t, b.ended, failFast, "cancellation of the handler's ctx")
	if end.err != context.Canceled {
		t.Errorf("handler's ctx ended with %v, want context.Canceled", end.err)
	}
	if end.hasDeadline {
		t.Error("handler's ctx has a deadline the caller never set")
	}
	// The connection survives a cancellation.
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(e.ctx); err != nil {
		t.Errorf("call after the cancellation: %v", err)
	}
}

// testShutdownCallee: the callee shuts down with calls of the caller in
// flight; each call gets its result or an error, none hangs, and later
// calls fail at once.
func testShutdownCallee(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	const n = 8
	res := make([]<-chan callResult, n)
	for i := range res {
		res[i] = goCall(e.ctx, a, b, hSlow)
	}
	for range n {
		recv(t, b.started, failFast, "start of the handlers")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	for i, ch := range res {
		r := recv(t, ch, shutdownMax, fmt.Sprintf("end of call %d", i))
		if r.err != nil && !errIsOneOf(r.err, velo.ErrShuttingDown, velo.ErrPeerLost) {
			t.Errorf("call %d: %v, want its result, ErrShuttingDown or ErrPeerLost", i, r.err)
		}
	}
	if err := recv(t, stopped, shutdownMax, "end of Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, failFast)
	defer cancel()
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call to the stopped instance: %v, want a prompt error", err)
	}
}

// testShutdownCaller: the caller shuts down with its calls in flight;
// each fails with ErrShuttingDown (or ErrPeerLost) and none hangs.
func testShutdownCaller(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	const n = 8
	res := make([]<-chan callResult, n)
	for i := range res {
		res[i] = goCall(e.ctx, a, b, hBlock)
	}
	for range n {
		recv(t, b.started, failFast, "start of the handlers")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.stop() }()
	for i, ch := range res {
		r := recv(t, ch, shutdownMax, fmt.Sprintf("end of call %d", i))
		if !errIsOneOf(r.err, velo.ErrShuttingDown, velo.ErrPeerLost) {
			t.Errorf("call %d: %v, want ErrShuttingDown or ErrPeerLost", i, r.err)
		}
	}
	if err := recv(t, stopped, shutdownMax, "end of Shutdown"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	for range n {
		if end := recv(t, b.ended, failFast, "cancellation of the callee's handlers"); end.err != context.Canceled {
			t.Errorf("callee handler's ctx ended with %v, want context.Canceled", end.err)
		}
	}
}

// testMalformedInput: garbage on a connection closes that connection and
// no other: the instance's established connection to its peer goes on.
func testMalformedInput(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(e.ctx); err != nil {
		t.Fatalf("first call: %v", err)
	}
	big := make([]byte, wire.PrefixLen)
	putLen(big, b.tap.MaxFrame()+1)
	early := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: hEcho})
	cases := []struct {
		name string
		data []byte
	}{
		{"bad-version", []byte{0, 0, 0, 2, 99, byte(wire.TypePing)}},
		{"unknown-type", []byte{0, 0, 0, 2, wire.Version, 200}},
		{"truncated-request", []byte{0, 0, 0, 5, wire.Version, byte(wire.TypeRequest), 3, 0, 0}},
		{"request-before-hello", early},
		{"oversize-length", append(big, wire.Version, byte(wire.TypeRequest), 0, 0)},
		{"all-ones", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	raw := f.RawConn
	if raw == nil {
		raw = rawViaDial(t, f)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(e.ctx, failFast)
			defer cancel()
			rc, err := raw(ctx, b.addr())
			if err != nil {
				t.Fatalf("raw connection: %v", err)
			}
			defer rc.Close()
			if _, err := rc.Write(c.data); err != nil {
				return // refused at once: closed is closed
			}
			closed := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, rc)
				if err == nil {
					err = io.EOF
				}
				closed <- err
			}()
			tm := time.NewTimer(failFast)
			defer tm.Stop()
			select {
			case <-closed:
			case <-tm.C:
				rc.Close()
				<-closed
				t.Errorf("the connection that sent %s was not closed within %v", c.name, failFast)
			}
		})
	}
	if got, err := a.m.Unary(hEcho).RawPayload([]byte("unharmed")).Instance(b.id).Send(e.ctx); err != nil || string(got) != "unharmed" {
		t.Errorf("call on the good connection after the garbage = %q, %v", got, err)
	}
	if n := a.tap.closeCount(); n != 0 {
		t.Errorf("the good connection was closed (%d close(s) seen by a)", n)
	}
}

func putLen(b []byte, n int) {
	b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}
