package stream_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/testnet"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// collector is a transport.Handler that keeps every frame it is given.
type collector struct {
	gate   chan struct{} // if not nil, HandleFrame waits for it to close
	mu     sync.Mutex
	frames [][]byte
	got    chan struct{} // signalled after each frame
	closed chan error
}

func newCollector() *collector {
	return &collector{got: make(chan struct{}, 1), closed: make(chan error, 1)}
}

func (c *collector) HandleFrame(f []byte) error {
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	c.frames = append(c.frames, f)
	c.mu.Unlock()
	select {
	case c.got <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) Closed(err error) { c.closed <- err }

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// pair connects two stream.Conns over TCP loopback.
func pair(t *testing.T) (a *stream.Conn, b *collector) {
	return pairWith(t, newCollector())
}

func pairWith(t *testing.T, b *collector) (a *stream.Conn, _ *collector) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- nc
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	recv := stream.New(rc, func(transport.Conn) transport.Handler { return b }, stream.Options{})
	a = stream.New(nc, func(transport.Conn) transport.Handler { return newCollector() }, stream.Options{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); recv.Serve() }()
	go func() { defer wg.Done(); a.Serve() }()
	t.Cleanup(func() {
		a.Close(nil)
		recv.Close(nil)
		wg.Wait()
	})
	return a, b
}

// frame is a ping frame whose data names its writer and sequence number.
func frame(writer, seq int) []byte {
	return wire.AppendPing(nil, false, uint64(writer)<<32|uint64(seq))
}

// TestConcurrentWritersKeepTheirOrder has many goroutines write at once,
// with WriteFrame and QueueFrame mixed, so that frames go out alone, in
// batches joined while a flusher yields, and through the writer goroutine:
// every frame must arrive whole, once, and in each writer's order.
func TestConcurrentWritersKeepTheirOrder(t *testing.T) {
	for _, c := range []struct {
		name  string
		procs int
		raw   string
	}{{"1P", 1, ""}, {"2P", 2, ""}, {"1P-net.Conn", 1, "0"}} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("VELO_RAW_IO", c.raw)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.procs))
			a, b := pair(t)
			const writers, each = 64, 300
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						var err error
						if (w+i)%3 == 0 {
							err = a.QueueFrame(context.Background(), frame(w, i))
						} else {
							err = a.WriteFrame(context.Background(), frame(w, i))
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			deadline := time.After(10 * time.Second)
			for b.count() < writers*each {
				select {
				case <-b.got:
				case <-deadline:
					t.Fatalf("%d of %d frames arrived", b.count(), writers*each)
				}
			}
			next := make([]int, writers)
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, f := range b.frames {
				typ, body, err := wire.ParseHeader(f)
				if err != nil || typ != wire.TypePing || len(body) != 8 {
					t.Fatalf("frame %x: type %v, %v", f, typ, err)
				}
				v := binary.BigEndian.Uint64(body)
				w, seq := int(v>>32), int(uint32(v))
				if w >= writers || seq != next[w] {
					t.Fatalf("writer %d: frame %d arrived when %d was due", w, seq, next[w])
				}
				next[w]++
			}
			if len(b.frames) != writers*each {
				t.Fatalf("%d frames arrived, want %d", len(b.frames), writers*each)
			}
		})
	}
}

// TestLargeFramesAndEOF sends frames larger than one raw system call
// moves, in both directions' worth of sizes, then closes the sender: each
// frame arrives whole, and the receiver ends with io.EOF.
func TestLargeFramesAndEOF(t *testing.T) {
	for _, raw := range []string{"", "0"} {
		t.Run("VELO_RAW_IO="+raw, func(t *testing.T) {
			t.Setenv("VELO_RAW_IO", raw)
			// The receiver stalls at first, so that the writes fill the
			// socket's buffers and a raw write meets EAGAIN and waits in
			// the netpoller.
			gate := make(chan struct{})
			b := newCollector()
			b.gate = gate
			a, _ := pairWith(t, b)
			// Frames just under the raw limit, many enough to fill the
			// socket's buffers (a raw write that meets EAGAIN waits in
			// the netpoller), then frames over it.
			sizes := []int{1, 64 << 10}
			for range 32 {
				sizes = append(sizes, 255<<10)
			}
			sizes = append(sizes, 256<<10+1, 3<<20+7)
			var want [][]byte
			var frames [][]byte
			for i, n := range sizes {
				body := bytes.Repeat([]byte{byte(i*7 + 1)}, n)
				f := wire.AppendPing(nil, false, uint64(i)) // a valid header...
				f = append(f, body...)                      // ...and a big tail
				binary.BigEndian.PutUint32(f, uint32(len(f)-wire.PrefixLen))
				want = append(want, f[wire.PrefixLen:])
				frames = append(frames, f)
			}
			wrote := make(chan error, 1)
			go func() {
				for _, f := range frames {
					if err := a.WriteFrame(context.Background(), f); err != nil {
						wrote <- fmt.Errorf("frame of %d bytes: %w", len(f), err)
						return
					}
				}
				wrote <- nil
			}()
			select {
			case err := <-wrote:
				t.Fatalf("%d MiB written to a receiver that reads nothing (%v): the test no longer fills the buffers", len(frames)/4, err)
			case <-time.After(200 * time.Millisecond):
			}
			close(gate)
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			a.Close(nil)
			select {
			case err := <-b.closed:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("receiver ended with %v, want io.EOF", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("receiver did not end after the sender closed")
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.frames) != len(want) {
				t.Fatalf("%d frames arrived, want %d", len(b.frames), len(want))
			}
			for i := range want {
				if !bytes.Equal(b.frames[i], want[i]) {
					t.Fatalf("frame %d (%d bytes) arrived altered (%d bytes)", i, len(want[i]), len(b.frames[i]))
				}
			}
		})
	}
}

// TestWriteToClosedPeerFails checks that writing to a peer that closed its
// socket fails with an error instead of hanging or succeeding forever.
func TestWriteToClosedPeerFails(t *testing.T) {
	for _, raw := range []string{"", "0"} {
		t.Run("VELO_RAW_IO="+raw, func(t *testing.T) {
			t.Setenv("VELO_RAW_IO", raw)
			nc, peer := testnet.TCPPair(t)
			a := stream.New(nc, func(transport.Conn) transport.Handler { return newCollector() }, stream.Options{})
			done := make(chan struct{})
			go func() { defer close(done); a.Serve() }()
			defer func() { a.Close(nil); <-done }()
			peer.Close()
			f := frame(0, 0)
			deadline := time.Now().Add(10 * time.Second)
			for {
				if err := a.WriteFrame(context.Background(), f); err != nil {
					return // ECONNRESET or EPIPE, or closed by Serve on EOF
				}
				if time.Now().After(deadline) {
					t.Fatal("writes to a closed peer kept succeeding")
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestResetIsReported checks that a connection reset by the peer ends the
// receive loop with an error that says so.
func TestResetIsReported(t *testing.T) {
	for _, raw := range []string{"", "0"} {
		t.Run("VELO_RAW_IO="+raw, func(t *testing.T) {
			t.Setenv("VELO_RAW_IO", raw)
			nc, peer := testnet.TCPPair(t)
			h := newCollector()
			a := stream.New(nc, func(transport.Conn) transport.Handler { return h }, stream.Options{})
			done := make(chan struct{})
			go func() { defer close(done); a.Serve() }()
			defer func() { a.Close(nil); <-done }()
			peer.(*net.TCPConn).SetLinger(0) // close with a reset
			peer.Close()
			select {
			case err := <-h.closed:
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("receive loop ended with %v, want ECONNRESET", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("receive loop did not end after a reset")
			}
		})
	}
}
