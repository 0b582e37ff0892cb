package velo_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Fault tests: dead, silent and misbehaving peers. Where a test needs to
// know that something happened on the wire (a request was written, a
// connection ended), it watches through tappedTransport instead of waiting
// a while; raw peers speak the wire format by hand through internal/wire.

// frameInfo is what the tap reports of one frame.
type frameInfo struct {
	typ     wire.Type
	handler string // requests only
	id      uint64 // requests, responses and cancels
}

// inspectFrame decodes the parts of frame (length prefix excluded) that
// tests synchronise on. It keeps no reference to frame.
func inspectFrame(frame []byte) frameInfo {
	typ, body, err := wire.ParseHeader(frame)
	if err != nil {
		return frameInfo{}
	}
	fi := frameInfo{typ: typ}
	switch typ {
	case wire.TypeRequest:
		r, err := wire.ParseRequest(body, wire.Limits{MaxHeaders: math.MaxUint16, MaxHeaderBytes: math.MaxInt32})
		if err == nil {
			fi.handler, fi.id = r.Handler, r.ID
		}
	case wire.TypeResponse:
		if r, err := wire.ParseResponse(body); err == nil {
			fi.id = r.ID
		}
	case wire.TypeCancel:
		fi.id, _ = wire.ParseCancel(body)
	}
	return fi
}

// tappedTransport wraps a transport and reports what the messenger does
// with its connections. The hooks are set before Build and never changed;
// each may be nil. They run on velo's goroutines and must not block.
type tappedTransport struct {
	transport.Transport
	onWrite  func(frameInfo) // a frame the messenger wrote, after WriteFrame returned nil
	onFrame  func(frameInfo) // a frame received, before the messenger handles it
	onClosed func(error)     // a connection ended, after the messenger's Closed returned
}

func (t *tappedTransport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	return t.Transport.Listen(ctx, t.wrap(bind))
}

func (t *tappedTransport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	return t.Transport.Dial(ctx, addr, t.wrap(bind))
}

func (t *tappedTransport) wrap(bind transport.Binder) transport.Binder {
	return func(c transport.Conn) transport.Handler {
		return &tapHandler{Handler: bind(&tapConn{Conn: c, tap: t}), tap: t}
	}
}

type tapConn struct {
	transport.Conn
	tap *tappedTransport
}

func (c *tapConn) WriteFrame(ctx context.Context, b []byte) error {
	err := c.Conn.WriteFrame(ctx, b)
	if err == nil && c.tap.onWrite != nil && len(b) > wire.PrefixLen {
		c.tap.onWrite(inspectFrame(b[wire.PrefixLen:]))
	}
	return err
}

// WriteStalled passes the wrapped conn's transport.Staller through, so
// that keepalive sees stalled writes through the tap.
func (c *tapConn) WriteStalled(now time.Time) time.Duration {
	if st, ok := c.Conn.(transport.Staller); ok {
		return st.WriteStalled(now)
	}
	return 0
}

type tapHandler struct {
	transport.Handler
	tap *tappedTransport
}

func (h *tapHandler) HandleFrame(frame []byte) error {
	if h.tap.onFrame != nil {
		h.tap.onFrame(inspectFrame(frame))
	}
	return h.Handler.HandleFrame(frame)
}

func (h *tapHandler) Closed(reason error) {
	h.Handler.Closed(reason)
	if h.tap.onClosed != nil {
		h.tap.onClosed(reason)
	}
}

// notify sends on a buffered channel without ever blocking velo.
func notify[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// waitRecv receives from ch, failing the test if ctx ends first.
func waitRecv[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// readRawFrame reads one frame (length prefix excluded) the way a peer
// that implements the wire format by hand would.
func readRawFrame(r io.Reader) ([]byte, error) {
	var pre [wire.PrefixLen]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, err
	}
	n := wire.FrameLen(pre[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("peer announced a frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readRawResponse reads the next frame from c, which must be a response.
func readRawResponse(t *testing.T, c io.Reader) wire.Response {
	t.Helper()
	f, err := readRawFrame(c)
	if err != nil {
		t.Fatal(err)
	}
	typ, body, err := wire.ParseHeader(f)
	if err != nil || typ != wire.TypeResponse {
		t.Fatalf("frame %v, %v; want a response", typ, err)
	}
	r, err := wire.ParseResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rawHelloPayload(id peer.ID, addr string, handlers ...string) ([]byte, error) {
	h := system.HelloMsg{
		Info:     peer.Info{ID: id, Addresses: map[string]string{tcp.Name: addr}},
		Handlers: handlers,
		MaxFrame: wire.DefaultMaxFrame,
		Protocol: wire.Version,
	}
	return h.Encode()
}

// rawAnswerHello plays the accepting side of the handshake on c: it reads
// the dialer's _hello request and answers it as instance id.
func rawAnswerHello(c net.Conn, id peer.ID, handlers ...string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	f, err := readRawFrame(c)
	if err != nil {
		return fmt.Errorf("reading hello: %w", err)
	}
	typ, body, err := wire.ParseHeader(f)
	if err != nil {
		return err
	}
	if typ != wire.TypeRequest {
		return fmt.Errorf("first frame is a %v, want a request", typ)
	}
	req, err := wire.ParseRequest(body, wire.Limits{})
	if err != nil {
		return err
	}
	if req.Handler != system.Hello || req.Kind != wire.KindUnary {
		return fmt.Errorf("first request is %v %q, want unary %q", req.Kind, req.Handler, system.Hello)
	}
	if _, err := system.DecodeHello(req.Payload); err != nil {
		return fmt.Errorf("decoding the dialer's hello: %w", err)
	}
	p, err := rawHelloPayload(id, c.LocalAddr().String(), handlers...)
	if err != nil {
		return err
	}
	_, err = c.Write(wire.AppendResponse(nil, &wire.Response{ID: req.ID, Payload: p}))
	return err
}

// rawSayHello plays the dialing side of the handshake on c as instance id.
func rawSayHello(c net.Conn, id peer.ID) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	p, err := rawHelloPayload(id, c.LocalAddr().String())
	if err != nil {
		return err
	}
	req := wire.Request{Kind: wire.KindUnary, ID: 1, Handler: system.Hello, Payload: p}
	if _, err := c.Write(wire.AppendRequest(nil, &req)); err != nil {
		return err
	}
	f, err := readRawFrame(c)
	if err != nil {
		return fmt.Errorf("reading the hello answer: %w", err)
	}
	typ, body, err := wire.ParseHeader(f)
	if err != nil {
		return err
	}
	if typ != wire.TypeResponse {
		return fmt.Errorf("answer to hello is a %v, want a response", typ)
	}
	resp, err := wire.ParseResponse(body)
	if err != nil {
		return err
	}
	if resp.ID != req.ID || resp.Status != wire.StatusOK {
		return fmt.Errorf("hello answered with id %d status %d (%s)", resp.ID, resp.Status, resp.Error)
	}
	_, err = system.DecodeHello(resp.Payload)
	return err
}

// waitPeerClose reads c until the other side closes it and returns how
// long that took; an error means c was still open after bound.
func waitPeerClose(c net.Conn, bound time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(bound))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // a ping or a response: keep reading
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return time.Since(start), fmt.Errorf("connection still open after %v", bound)
		}
		return time.Since(start), nil // EOF or reset: closed by the peer
	}
}

// TestFaultPeerKilledMidCall: a peer process dies while a call to it is in
// flight; the call fails with ErrPeerLost within 1 s of the kill.
func TestFaultPeerKilledMidCall(t *testing.T) {
	c := startChild(t)
	blockSent := make(chan struct{}, 1)
	tap := &tappedTransport{Transport: tcp.New(tcp.Options{}), onWrite: func(f frameInfo) {
		if f.typ == wire.TypeRequest && f.handler == "block" {
			notify(blockSent, struct{}{})
		}
	}}
	m := newMessenger(t, velo.Options{}, tap)
	if err := m.RegisterPeer(c.Info); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	echo := func(p string) {
		t.Helper()
		got, err := m.Unary("echo").RawPayload([]byte(p)).Instance(c.Info.ID).Send(ctx)
		if err != nil || string(got) != p {
			t.Fatalf("echo(%q) = %q, %v", p, got, err)
		}
	}
	echo("connection up")

	type outcome struct {
		err error
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		_, err := m.Unary("block").Instance(c.Info.ID).Send(ctx)
		done <- outcome{err, time.Now()}
	}()
	select {
	case <-blockSent:
	case o := <-done:
		t.Fatalf("block returned before the kill: %v", o.err)
	case <-ctx.Done():
		t.Fatal("the block request was never written")
	}
	// Frames on one connection are read in order: the echo's answer means
	// the child has read the block request, which now waits in its handler.
	echo("block is in flight")
	select {
	case o := <-done:
		t.Fatalf("block returned before the kill: %v", o.err)
	default:
	}

	killed := time.Now()
	c.Kill()
	select {
	case o := <-done:
		if !errors.Is(o.err, velo.ErrPeerLost) {
			t.Errorf("block after the kill: err = %v, want ErrPeerLost", o.err)
		}
		if d := o.at.Sub(killed); d >= time.Second {
			t.Errorf("block failed %v after the kill, want < 1s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("block still pending 10 s after the peer was killed")
	}
}

// TestFaultReconnectAfterPeerRestart: a peer shuts down and comes back with
// the same instance id on a new port; once re-registered, the next call
// reaches the new process.
func TestFaultReconnectAfterPeerRestart(t *testing.T) {
	ctx := testCtx(t)
	lost := make(chan error, 8)
	a := newMessenger(t, velo.Options{}, &tappedTransport{
		Transport: tcp.New(tcp.Options{}),
		onClosed:  func(err error) { notify(lost, err) },
	})
	startB := func(id peer.ID, answer string) *velo.Messenger {
		t.Helper()
		b, err := velo.NewBuilder().InstanceID(id).Build(ctx)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		t.Cleanup(func() { b.Shutdown(context.Background()) })
		mustRegister(t, b, velo.UnaryHandler("whoami", func(context.Context, *velo.Context) ([]byte, error) {
			return []byte(answer), nil
		}))
		return b
	}
	b1 := startB(peer.NewID(), "first")
	id := b1.InstanceID()
	if err := a.RegisterPeer(b1.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Unary("whoami").Instance(id).Send(ctx); err != nil || string(got) != "first" {
		t.Fatalf("call to the first incarnation = %q, %v", got, err)
	}
	oldAddr := b1.PeerInfo().Addresses[tcp.Name]
	if err := b1.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of the first incarnation: %v", err)
	}
	// a has noticed: its connection to the first incarnation is gone.
	waitRecv(t, ctx, lost, "a's connection to the stopped peer to close")

	b2 := startB(id, "second")
	if b2.InstanceID() != id {
		t.Fatalf("restarted instance id = %s, want %s", b2.InstanceID(), id)
	}
	t.Logf("peer moved from %s to %s", oldAddr, b2.PeerInfo().Addresses[tcp.Name])
	if err := a.RegisterPeer(b2.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	got, err := a.Unary("whoami").Instance(id).Send(ctx)
	if err != nil || string(got) != "second" {
		t.Fatalf("first call after the restart = %q, %v; want %q", got, err, "second")
	}
}

// TestFaultKeepaliveDetectsSilentPeer: a peer that completes the handshake
// and then neither reads nor writes is declared lost by keepalive, and the
// call waiting on it fails with ErrPeerLost within the bound.
func TestFaultKeepaliveDetectsSilentPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silentID := peer.NewID()
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		c, err := ln.Accept()
		if err == nil {
			if err = rawAnswerHello(c, silentID, "silent"); err != nil {
				c.Close()
				c = nil
			}
		}
		acc <- accepted{c, err}
		// From here on the peer is silent: nobody reads or writes c.
	}()
	t.Cleanup(func() {
		ln.Close()
		<-exited
		select {
		case a := <-acc:
			if a.c != nil {
				a.c.Close()
			}
		default:
		}
	})

	const interval, timeout = 100 * time.Millisecond, 400 * time.Millisecond
	m := newMessenger(t, velo.Options{KeepaliveInterval: interval, KeepaliveTimeout: timeout})
	if err := m.RegisterPeer(peer.Info{ID: silentID, Addresses: map[string]string{tcp.Name: ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	start := time.Now()
	_, err = m.Unary("silent").Instance(silentID).Send(ctx)
	elapsed := time.Since(start)

	a := waitRecv(t, ctx, acc, "the raw peer's handshake")
	if a.err != nil {
		t.Fatalf("raw peer: %v", a.err)
	}
	a.c.Close()
	if !errors.Is(err, velo.ErrPeerLost) {
		t.Fatalf("call to a silent peer: err = %v, want ErrPeerLost", err)
	}
	if elapsed >= 3*time.Second {
		t.Errorf("silent peer detected after %v, want < 3s (KeepaliveTimeout %v)", elapsed, timeout)
	}
	t.Logf("silent peer detected after %v: %v", elapsed, err)
}

// TestFault10000ConcurrentUnaryCalls: ten thousand calls at once over one
// connection all complete, each with its own answer.
func TestFault10000ConcurrentUnaryCalls(t *testing.T) {
	a, b := pair(t)
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	const n = 10000
	ctx := testCtx(t)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p := binary.BigEndian.AppendUint64(nil, uint64(i))
			got, err := a.Unary("echo").RawPayload(p).Instance(b.InstanceID()).Send(ctx)
			switch {
			case err != nil:
				errs <- fmt.Errorf("call %d: %w", i, err)
			case !bytes.Equal(got, p):
				errs <- fmt.Errorf("call %d: answer %x, want %x", i, got, p)
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d calls failed", failed, n)
	}
}

// TestFaultMalformedFrameClosesOnlyThatConnection: raw clients that send
// garbage, an oversize length, or half a frame lose their own connection,
// while another messenger goes on calling the same instance undisturbed.
func TestFaultMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	const handshake = 200 * time.Millisecond
	a := newMessenger(t, velo.Options{})
	b := newMessenger(t, velo.Options{HandshakeTimeout: handshake})
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	ctx := testCtx(t)
	echo := func(i int) error {
		p := binary.BigEndian.AppendUint64(nil, uint64(i))
		got, err := a.Unary("echo").RawPayload(p).Instance(b.InstanceID()).Send(ctx)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, p) {
			return fmt.Errorf("echo %d answered %x", i, got)
		}
		return nil
	}
	if err := echo(0); err != nil {
		t.Fatal(err)
	}

	// a calls b in a loop for as long as the raw clients misbehave.
	type traffic struct {
		calls int
		err   error
	}
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	t.Cleanup(halt)
	result := make(chan traffic, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				result <- traffic{n, nil}
				return
			default:
			}
			if err := echo(n + 1); err != nil {
				result <- traffic{n, err}
				return
			}
			n++
		}
	}()

	addr := b.PeerInfo().Addresses[tcp.Name]
	badVersion := []byte{0, 0, 0, 2, wire.Version + 1, byte(wire.TypePing)}
	cases := []struct {
		name  string
		hello bool   // complete the handshake first
		send  []byte // then write this and fall silent
	}{
		{"bad version", false, badVersion},
		{"bad version after handshake", true, badVersion},
		{"unknown frame type", true, []byte{0, 0, 0, 2, wire.Version, 0xee}},
		{"oversize length", false, []byte{0xff, 0xff, 0xff, 0xff, wire.Version, byte(wire.TypeRequest)}},
		{"oversize length after handshake", true, []byte{0xff, 0xff, 0xff, 0xff}},
		{"request before hello", false, wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 9, Handler: "echo"})},
		// 100 bytes announced, 10 sent: only the handshake timeout ends it.
		{"half a frame", false, append([]byte{0, 0, 0, 100, wire.Version, byte(wire.TypeRequest)}, 1, 2, 3, 4)},
	}
	for _, tc := range cases {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: dial: %v", tc.name, err)
		}
		if tc.hello {
			if err := rawSayHello(c, peer.NewID()); err != nil {
				c.Close()
				t.Fatalf("%s: handshake: %v", tc.name, err)
			}
		}
		if _, err := c.Write(tc.send); err != nil {
			c.Close()
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		d, err := waitPeerClose(c, 3*time.Second)
		c.Close()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		t.Logf("%s: closed by the server after %v", tc.name, d)
	}

	halt()
	tr := waitRecv(t, ctx, result, "a's traffic loop")
	if tr.err != nil {
		t.Fatalf("a's call to b failed after %d calls while raw clients misbehaved: %v", tr.calls, tr.err)
	}
	if tr.calls == 0 {
		t.Error("a made no call while the raw clients misbehaved")
	}
	if err := echo(-1); err != nil {
		t.Fatalf("a's call to b afterwards: %v", err)
	}
}

// TestFaultHandshakeTimeout: a connection that never says hello is closed
// by the server once HandshakeTimeout has passed.
func TestFaultHandshakeTimeout(t *testing.T) {
	const handshake = 200 * time.Millisecond
	b := newMessenger(t, velo.Options{HandshakeTimeout: handshake})
	start := time.Now()
	c, err := net.DialTimeout("tcp", b.PeerInfo().Addresses[tcp.Name], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := waitPeerClose(c, 3*time.Second); err != nil {
		t.Fatalf("a connection that never said hello: %v (HandshakeTimeout %v)", err, handshake)
	}
	elapsed := time.Since(start)
	if elapsed < handshake {
		t.Errorf("closed after %v, before HandshakeTimeout %v", elapsed, handshake)
	}
	t.Logf("closed after %v", elapsed)
}
