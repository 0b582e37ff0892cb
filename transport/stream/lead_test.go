package stream_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// awaiter is a transport.Handler that implements transport.Busy, as the
// messenger's session does: it delivers each response to the waiter of
// its id and counts the requests.
type awaiter struct {
	mu      sync.Mutex
	waits   map[uint64]*waiter
	reqs    atomic.Int32
	handled atomic.Int32 // frames given to HandleFrame
	closed  chan error
}

// waiter is one response awaited: a transport.Awaited.
type waiter struct{ ch chan []byte }

func (w *waiter) Arrived() bool { return len(w.ch) > 0 }

func newAwaiter() *awaiter {
	return &awaiter{waits: make(map[uint64]*waiter), closed: make(chan error, 1)}
}

func (a *awaiter) await(id uint64) *waiter {
	w := &waiter{ch: make(chan []byte, 1)}
	a.mu.Lock()
	a.waits[id] = w
	a.mu.Unlock()
	return w
}

func (a *awaiter) HandleFrame(f []byte) error {
	a.handled.Add(1)
	t, body, err := wire.ParseHeader(f)
	if err != nil {
		return err
	}
	switch t {
	case wire.TypeRequest:
		a.reqs.Add(1)
	case wire.TypeResponse:
		r, err := wire.ParseResponse(body)
		if err != nil {
			return err
		}
		a.mu.Lock()
		w := a.waits[r.ID]
		delete(a.waits, r.ID)
		a.mu.Unlock()
		if w == nil {
			return errors.New("response nobody awaits")
		}
		w.ch <- r.Payload
	}
	return nil
}

func (a *awaiter) Closed(err error) { a.closed <- err }

func (a *awaiter) Waiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waits) > 0
}

func (a *awaiter) Crowded() bool { return false }

// leadPair is a stream.Conn with CallerReads over TCP loopback, whose
// peer is a raw socket the test writes frames to by hand.
func leadPair(t *testing.T) (*stream.Conn, *awaiter, net.Conn) {
	t.Helper()
	if runtime.GOMAXPROCS(0) == 1 {
		t.Skip("with GOMAXPROCS 1 the receive goroutine keeps its turn: callers never read")
	}
	// Serve takes a free turn back at its second look with no caller:
	// 1 ms in use, too short for a test goroutine on a loaded machine to
	// be sure to lead first.
	stream.WidenLinger(t, 100*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	h := newAwaiter()
	c := stream.New(nc, func(transport.Conn) transport.Handler { return h }, stream.Options{CallerReads: true})
	done := make(chan struct{})
	go func() { defer close(done); c.Serve() }()
	t.Cleanup(func() {
		c.Close(nil)
		peer.Close()
		<-done
	})
	return c, h, peer
}

func response(id uint64, payload []byte) []byte {
	return wire.AppendResponse(nil, &wire.Response{ID: id, Payload: payload})
}

func writeRaw(t *testing.T, nc net.Conn, b []byte) {
	t.Helper()
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// never is a response that never arrives.
type never struct{}

func (never) Arrived() bool { return false }

// awaitFreeTurn has Serve deliver a response (after which it gives its
// turn up) and waits until a caller may lead.
func awaitFreeTurn(t *testing.T, c *stream.Conn, h *awaiter, peer net.Conn, id uint64) {
	t.Helper()
	w := h.await(id)
	writeRaw(t, peer, response(id, nil))
	<-w.ch
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		led := c.Lead(ctx, never{})
		cancel()
		if led {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve never gave its read turn up")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestLeadReadsItsResponse: once Serve gave its turn up, a caller reads
// its own response, and the frames after it stay in sync.
func TestLeadReadsItsResponse(t *testing.T) {
	c, h, peer := leadPair(t)
	awaitFreeTurn(t, c, h, peer, 1)
	for id := uint64(2); id < 50; id++ {
		w := h.await(id)
		want := bytes.Repeat([]byte{byte(id)}, int(id)*100)
		writeRaw(t, peer, response(id, want))
		c.Lead(context.Background(), w)
		select {
		case got := <-w.ch:
			if !bytes.Equal(got, want) {
				t.Fatalf("response %d: %d bytes, want %d", id, len(got), len(want))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("response %d never arrived", id)
		}
	}
}

// TestLeadEndsWithItsCtxInsideAFrame: a caller whose ctx ends while half
// of a frame has arrived leaves, losing no byte; the rest of the frame is
// read by Serve, which takes the turn back, with nobody else leading.
func TestLeadEndsWithItsCtxInsideAFrame(t *testing.T) {
	c, h, peer := leadPair(t)
	awaitFreeTurn(t, c, h, peer, 1)
	w := h.await(2)
	want := bytes.Repeat([]byte("half"), 4<<10)
	f := response(2, want)
	writeRaw(t, peer, f[:len(f)/2])
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	start := time.Now()
	led := c.Lead(ctx, w)
	cancel()
	if !led {
		t.Fatal("Lead did not take the free turn")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Lead returned %v after its ctx ended", took)
	}
	if w.Arrived() {
		t.Fatal("a half frame was delivered")
	}
	writeRaw(t, peer, f[len(f)/2:])
	w3 := h.await(3)
	writeRaw(t, peer, response(3, []byte("next")))
	for _, x := range []struct {
		w    *waiter
		want []byte
	}{{w, want}, {w3, []byte("next")}} {
		select {
		case got := <-x.w.ch:
			if !bytes.Equal(got, x.want) {
				t.Fatalf("got %.20q…, want %.20q…", got, x.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not take the turn back to read the rest")
		}
	}
}

// TestLeadLeavesRequestsToServe: a request read by a caller ends its turn
// and goes to Serve, which reads on (the response after it arrives), and
// keeps the turn from then on: a connection that carries requests is read
// by Serve alone.
func TestLeadLeavesRequestsToServe(t *testing.T) {
	c, h, peer := leadPair(t)
	awaitFreeTurn(t, c, h, peer, 1)
	w := h.await(2)
	req := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 9, Handler: "h"})
	writeRaw(t, peer, append(req, response(2, []byte("after"))...))
	if !c.Lead(context.Background(), w) {
		t.Fatal("Lead did not take the free turn")
	}
	select {
	case got := <-w.ch:
		if string(got) != "after" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the response after the request never arrived")
	}
	if n := h.reqs.Load(); n != 1 {
		t.Fatalf("%d requests handled, want 1", n)
	}
	for range 20 {
		if c.Lead(context.Background(), never{}) {
			t.Fatal("a caller led a connection that carries requests")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestServeTakesTheTurnBack: frames that arrive once the callers left
// are read by Serve within a few lingerTicks, with no caller to read them.
func TestServeTakesTheTurnBack(t *testing.T) {
	c, h, peer := leadPair(t)
	awaitFreeTurn(t, c, h, peer, 1)
	w := h.await(2)
	start := time.Now()
	writeRaw(t, peer, response(2, []byte("unled")))
	select {
	case <-w.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("nobody read the frame")
	}
	t.Logf("read %v after it was sent", time.Since(start))
}

// TestUnblockEndsLead: Unblock ends the turn of a caller whose ctx cannot
// end, and closing the connection ends one too.
func TestUnblockEndsLead(t *testing.T) {
	c, h, peer := leadPair(t)
	awaitFreeTurn(t, c, h, peer, 1)
	ended := make(chan bool, 1)
	go func() { ended <- c.Lead(context.Background(), never{}) }()
	time.Sleep(20 * time.Millisecond)
	c.Unblock()
	select {
	case led := <-ended:
		if !led {
			t.Fatal("Lead did not take the free turn")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Unblock did not end the turn")
	}

	awaitFreeTurn(t, c, h, peer, 2)
	go func() { ended <- c.Lead(context.Background(), never{}) }()
	time.Sleep(20 * time.Millisecond)
	c.Close(errors.New("test closes"))
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the turn")
	}
	select {
	case err := <-h.closed:
		if err == nil || err.Error() != "test closes" {
			t.Fatalf("Closed(%v), want the reason of Close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Closed was not called")
	}
}
