package velo_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/faultproxy"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Reliability tests: liveness through a fault proxy (a black-holed peer, a
// connection cut one way), and the resource limits that the other test
// files do not cover (connections accepted, calls in flight per peer).
// docs/reliability.md maps every guarantee to the test that proves it.

// relServer is an instance whose handlers the liveness tests call:
// "echo" answers its payload; "hold" waits for its ctx (or for release,
// when one is given) so that a call to it stays in flight.
type relServer struct {
	m       *velo.Messenger
	started chan struct{} // one per "hold" that began
	running atomic.Int32  // "hold" calls running now
}

func newRelServer(t *testing.T, opts velo.Options, release <-chan struct{}, ts ...*tcp.Transport) *relServer {
	t.Helper()
	var m *velo.Messenger
	if len(ts) > 0 {
		m = newMessenger(t, opts, ts[0])
	} else {
		m = newMessenger(t, opts)
	}
	s := &relServer{m: m, started: make(chan struct{}, 64)}
	mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	mustRegister(t, m, velo.UnaryHandler("hold", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		s.running.Add(1)
		defer s.running.Add(-1)
		notify(s.started, struct{}{})
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-release:
			return []byte("released"), nil
		}
	}))
	return s
}

// relProxy puts a fault proxy in front of s and makes a reach s through it.
func relProxy(t *testing.T, a *velo.Messenger, s *relServer) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(s.m.PeerInfo().Addresses[tcp.Name])
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the messengers, so closed after their Shutdown:
	// the proxy's cleanup runs last.
	t.Cleanup(func() { p.Close() })
	if err := a.RegisterPeer(peer.Info{ID: s.m.InstanceID(), Addresses: map[string]string{tcp.Name: p.Addr()}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// relCall is the outcome of a call made on a goroutine.
type relCall struct {
	err error
	at  time.Time
}

func goUnary(ctx context.Context, m *velo.Messenger, to peer.ID, handler string) <-chan relCall {
	ch := make(chan relCall, 1)
	go func() {
		_, err := m.Unary(handler).RawPayload([]byte("x")).Instance(to).Send(ctx)
		ch <- relCall{err, time.Now()}
	}()
	return ch
}

func relEcho(t *testing.T, ctx context.Context, m *velo.Messenger, to peer.ID, what string) {
	t.Helper()
	got, err := m.Unary("echo").RawPayload([]byte(what)).Instance(to).Send(ctx)
	if err != nil || string(got) != what {
		t.Fatalf("echo %q = %q, %v", what, got, err)
	}
}

// Keepalive settings of the liveness tests: a silent peer is declared
// lost after timeout, checked every interval/2, so within timeout +
// interval/2 (see velo.Options). margin absorbs a loaded machine.
const (
	relInterval = 100 * time.Millisecond
	relTimeout  = 500 * time.Millisecond
	relBound    = relTimeout + relInterval/2
	relMargin   = 1500 * time.Millisecond
)

// TestReliabilityBlackHoleFailsCallsAndRedials: the network loses the
// peer without closing anything (the half-open case). Every call in
// flight, sent before or after the black hole began, fails with
// ErrPeerLost within the keepalive bound. While the hole lasts a new call
// fails with ErrPeerLost too, within HandshakeTimeout (the new
// connection's handshake gets no answer), not with ErrDeadlineExceeded:
// its own deadline is far;
// once the network is back, the next call dials again, through the proxy,
// and succeeds.
func TestReliabilityBlackHoleFailsCallsAndRedials(t *testing.T) {
	const handshake = 400 * time.Millisecond
	a := newMessenger(t, velo.Options{KeepaliveInterval: relInterval, KeepaliveTimeout: relTimeout, HandshakeTimeout: handshake})
	// b keeps the defaults: only a's settings bound a's detection.
	b := newRelServer(t, velo.Options{}, nil)
	p := relProxy(t, a, b)
	ctx := testCtx(t)
	id := b.m.InstanceID()
	relEcho(t, ctx, a, id, "up")

	calls := []<-chan relCall{goUnary(ctx, a, id, "hold")}
	waitRecv(t, ctx, b.started, "the hold call to start")
	holed := time.Now()
	p.Set(faultproxy.BlackHole())
	for range 3 { // written to the open connection, never delivered
		calls = append(calls, goUnary(ctx, a, id, "echo"))
	}
	for i, ch := range calls {
		r := waitRecv(t, ctx, ch, "a call in flight to end")
		if !errors.Is(r.err, velo.ErrPeerLost) {
			t.Errorf("call %d in flight during the black hole: %v, want ErrPeerLost", i, r.err)
		}
		d := r.at.Sub(holed)
		if d > relBound+relMargin {
			t.Errorf("call %d failed %v after the black hole began, want within %v (+%v margin)", i, d, relBound, relMargin)
		}
		if d < relTimeout/2 {
			t.Errorf("call %d failed %v after the black hole began, before keepalive could tell: %v", i, d, r.err)
		}
		t.Logf("call %d failed after %v: %v", i, d.Round(time.Millisecond), r.err)
	}

	// Still black-holed: a new call dials again, and the handshake on the
	// new connection goes unanswered.
	start := time.Now()
	_, err := a.Unary("echo").RawPayload([]byte("x")).Instance(id).Send(ctx)
	if !errors.Is(err, velo.ErrPeerLost) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call while the peer is unreachable: %v, want ErrPeerLost (its own deadline is far)", err)
	}
	if d := time.Since(start); d > handshake+relMargin {
		t.Errorf("call while the peer is unreachable took %v, want within the handshake timeout %v", d, handshake)
	}
	t.Logf("call while unreachable: %v after %v", err, time.Since(start).Round(time.Millisecond))
	accepted := p.Stats().Accepted

	p.Set(faultproxy.PassThrough())
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	relEcho(t, cctx, a, id, "back")
	if n := p.Stats().Accepted; n <= accepted {
		t.Errorf("the proxy accepted %d connections, as before the call: the call did not dial again through it", n)
	}
}

// TestReliabilityCutDirectionDetected: the connection loses one direction
// only. Whichever it is, a's keepalive declares the peer lost within a's
// bound, even though the peer itself (timeout one minute) never gives up
// and keeps pinging a when a's frames no longer reach it; then the next
// call dials again and succeeds.
func TestReliabilityCutDirectionDetected(t *testing.T) {
	for _, dir := range []faultproxy.Direction{faultproxy.Up, faultproxy.Down} {
		t.Run(dir.String(), func(t *testing.T) {
			a := newMessenger(t, velo.Options{KeepaliveInterval: relInterval, KeepaliveTimeout: relTimeout})
			b := newRelServer(t, velo.Options{KeepaliveInterval: relInterval, KeepaliveTimeout: time.Minute}, nil)
			p := relProxy(t, a, b)
			ctx := testCtx(t)
			id := b.m.InstanceID()
			relEcho(t, ctx, a, id, "up")

			call := goUnary(ctx, a, id, "hold")
			waitRecv(t, ctx, b.started, "the hold call to start")
			cut := time.Now()
			p.Set(faultproxy.Cut(dir))
			r := waitRecv(t, ctx, call, "the call in flight to end")
			if !errors.Is(r.err, velo.ErrPeerLost) {
				t.Errorf("call in flight when %s was cut: %v, want ErrPeerLost", dir, r.err)
			}
			if d := r.at.Sub(cut); d > relBound+relMargin {
				t.Errorf("call failed %v after %s was cut, want within %v (+%v margin)", d, dir, relBound, relMargin)
			} else {
				t.Logf("cut %s detected after %v: %v", dir, d.Round(time.Millisecond), r.err)
			}

			p.Set(faultproxy.PassThrough())
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			relEcho(t, cctx, a, id, "back")
		})
	}
}

// TestReliabilityDefaultKeepaliveBound: with the default options a
// black-holed peer is declared lost within 10 s (KeepaliveTimeout 7 s,
// checked every second). It takes about 8 s, so it runs in parallel with
// the other tests and not under -short.
func TestReliabilityDefaultKeepaliveBound(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 8 s")
	}
	t.Parallel()
	a := newMessenger(t, velo.Options{})
	b := newRelServer(t, velo.Options{}, nil)
	p := relProxy(t, a, b)
	ctx := testCtx(t)
	id := b.m.InstanceID()
	relEcho(t, ctx, a, id, "up")
	call := goUnary(ctx, a, id, "hold")
	waitRecv(t, ctx, b.started, "the hold call to start")
	holed := time.Now()
	p.Set(faultproxy.BlackHole())
	r := waitRecv(t, ctx, call, "the call in flight to end")
	if !errors.Is(r.err, velo.ErrPeerLost) {
		t.Errorf("call in flight: %v, want ErrPeerLost", r.err)
	}
	if d := r.at.Sub(holed); d > 10*time.Second {
		t.Errorf("black-holed peer detected after %v with the default options, want <= 10 s", d)
	} else {
		t.Logf("detected after %v", d.Round(time.Millisecond))
	}
}

// TestReliabilityMaxConns: with tcp.Options.MaxConns 3, three raw
// connections are accepted and served (their hello is answered) and stay
// open; a fourth is closed at once; once one of the three goes, a new
// connection is accepted again.
func TestReliabilityMaxConns(t *testing.T) {
	const max = 3
	quiet := velo.Options{HandshakeTimeout: time.Minute, KeepaliveInterval: 30 * time.Second, KeepaliveTimeout: time.Minute}
	b := newMessenger(t, quiet, tcp.New(tcp.Options{MaxConns: max}))
	addr := b.PeerInfo().Addresses[tcp.Name]
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var open []net.Conn
	for i := range max {
		c := dial()
		if err := rawSayHello(c, peer.NewID()); err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, max, err)
		}
		open = append(open, c)
	}

	extra := dial()
	d, err := waitPeerClose(extra, 3*time.Second)
	if err != nil {
		t.Fatalf("connection %d beyond MaxConns %d: %v", max+1, max, err)
	}
	t.Logf("connection %d closed after %v", max+1, d)
	for i, c := range open {
		if _, err := waitPeerClose(c, 100*time.Millisecond); err == nil {
			t.Errorf("connection %d of %d was closed", i+1, max)
		}
	}

	// Room again once one of them closes (the server notices
	// asynchronously, hence the retries).
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial()
		err := rawSayHello(c, peer.NewID())
		if err == nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one of %d closed: %v", max, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReliabilityMaxCallsInFlightWaits: with MaxCallsInFlight 2, a third
// call to the same peer waits (it is not sent) until one of the two ends,
// or until its own ctx ends; calls to another peer and AMSend are not
// held back.
func TestReliabilityMaxCallsInFlightWaits(t *testing.T) {
	release := &gate{ch: make(chan struct{})}
	a := newMessenger(t, velo.Options{MaxCallsInFlight: 2})
	b := newRelServer(t, velo.Options{}, release.ch)
	c := newRelServer(t, velo.Options{}, nil)
	defer release.open() // before the messengers shut down
	for _, s := range []*relServer{b, c} {
		if err := a.RegisterPeer(s.m.PeerInfo()); err != nil {
			t.Fatal(err)
		}
	}
	noted := make(chan struct{}, 1)
	mustRegister(t, b.m, velo.AMHandler("note", func(context.Context, *velo.Context) error {
		notify(noted, struct{}{})
		return nil
	}))
	ctx := testCtx(t)
	id := b.m.InstanceID()

	first := []<-chan relCall{goUnary(ctx, a, id, "hold"), goUnary(ctx, a, id, "hold")}
	waitRecv(t, ctx, b.started, "the first hold to start")
	waitRecv(t, ctx, b.started, "the second hold to start")
	third := goUnary(ctx, a, id, "hold")

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := a.Unary("echo").Instance(id).Send(short)
	if !errors.Is(err, velo.ErrDeadlineExceeded) {
		t.Errorf("call over the limit with a 200 ms deadline: %v, want ErrDeadlineExceeded", err)
	} else if remoteFlag(t, err) {
		t.Errorf("call over the limit failed on the remote side: %v", err)
	}
	if n := b.running.Load(); n != 2 {
		t.Errorf("%d hold calls running on b with MaxCallsInFlight 2", n)
	}
	select {
	case r := <-third:
		t.Fatalf("the third call returned while two were in flight: %v", r.err)
	default:
	}
	relEcho(t, ctx, a, c.m.InstanceID(), "another peer is not held back")
	if err := a.AMSend("note").Instance(id).Send(ctx); err != nil {
		t.Errorf("AMSend while the limit is reached: %v", err)
	}
	waitRecv(t, ctx, noted, "the AMSend to be handled")

	release.open()
	for i, ch := range append(first, third) {
		if r := waitRecv(t, ctx, ch, "a hold call to end"); r.err != nil {
			t.Errorf("hold call %d: %v", i+1, r.err)
		}
	}
}

// TestReliabilityMaxCallsInFlightBusy: with RejectCallsOverLimit, a call
// beyond MaxCallsInFlight fails at once with a local ErrBusy; calls go
// through again once the others end.
func TestReliabilityMaxCallsInFlightBusy(t *testing.T) {
	release := &gate{ch: make(chan struct{})}
	a := newMessenger(t, velo.Options{MaxCallsInFlight: 2, RejectCallsOverLimit: true})
	b := newRelServer(t, velo.Options{}, release.ch)
	defer release.open() // before the messengers shut down
	if err := a.RegisterPeer(b.m.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	id := b.m.InstanceID()
	held := []<-chan relCall{goUnary(ctx, a, id, "hold"), goUnary(ctx, a, id, "hold")}
	waitRecv(t, ctx, b.started, "the first hold to start")
	waitRecv(t, ctx, b.started, "the second hold to start")

	start := time.Now()
	_, err := a.Unary("echo").Instance(id).Send(ctx)
	if !errors.Is(err, velo.ErrBusy) {
		t.Fatalf("call over the limit: %v, want ErrBusy", err)
	}
	if remoteFlag(t, err) {
		t.Errorf("busy came from the remote side: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v, want at once", d)
	}

	release.open()
	for i, ch := range held {
		if r := waitRecv(t, ctx, ch, "a hold call to end"); r.err != nil {
			t.Errorf("hold call %d: %v", i+1, r.err)
		}
	}
	relEcho(t, ctx, a, id, "after the others ended")
}

// relErrCode names the code of a velo error, for logs and summaries.
func relErrCode(err error) string {
	var ve *velo.Error
	if errors.As(err, &ve) {
		return ve.Code.String()
	}
	return fmt.Sprintf("not a velo error (%T)", err)
}
