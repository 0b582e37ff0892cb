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

// TestTimedRequestsAreStampedWhenWritten: requests that wait in the
// connection's buffer behind a stalled socket have their timeout set when
// they are written, not when they were queued, and one whose deadline
// passes while it waits is withdrawn: the peer never sees it. A writer
// that waits for room returns when its ctx ends.
func TestTimedRequestsAreStampedWhenWritten(t *testing.T) {
	for _, raw := range []string{"1", "0"} {
		t.Run("raw="+raw, func(t *testing.T) {
			t.Setenv("VELO_RAW_IO", raw)
			b, open := gatedCollector(t)
			a, _ := pairWith(t, b)
			// A frame far larger than the socket buffers: the writer
			// goroutine is left writing it while the peer reads nothing.
			big := make([]byte, 8<<20)
			binary.BigEndian.PutUint32(big, uint32(len(big)-wire.PrefixLen))
			big[4], big[5] = wire.Version, byte(wire.TypePing)
			stopReading(t, a)
			// A ctx that can end: without raw I/O, a writer whose ctx
			// cannot end writes on its own goroutine, and would block.
			bigCtx, cancelBig := context.WithCancel(context.Background())
			defer cancelBig()
			if err := a.WriteFrame(bigCtx, big); err != nil {
				t.Fatal(err)
			}
			req := func(id uint64, d time.Duration) (context.Context, []byte) {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				t.Cleanup(cancel)
				return ctx, wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: id, Timeout: d, Handler: "h"})
			}
			short, shortFrame := req(1, 300*time.Millisecond)
			long, longFrame := req(2, 5*time.Second)
			for _, w := range []struct {
				ctx context.Context
				f   []byte
			}{{short, shortFrame}, {long, longFrame}} {
				if err := a.WriteFrame(w.ctx, w.f); err != nil {
					t.Fatalf("queueing a timed request: %v", err)
				}
			}
			// Fill the pending buffer: the next writer must wait for room,
			// and give up with its ctx.
			filler := frame(9, 9)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				err := a.QueueFrame(ctx, filler)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			waitCtx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			start := time.Now()
			err := a.WriteFrame(waitCtx, frame(8, 8))
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
				t.Fatalf("a writer waiting for room: %v after %v, want its ctx's error at 100 ms", err, time.Since(start))
			}
			time.Sleep(600 * time.Millisecond)
			open() // the peer reads again
			var got []wire.Request
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				got = got[:0]
				b.mu.Lock()
				for _, f := range b.frames {
					if typ, body, err := wire.ParseHeader(f); err == nil && typ == wire.TypeRequest {
						r, err := wire.ParseRequest(body, wire.Limits{})
						if err != nil {
							t.Fatal(err)
						}
						got = append(got, r)
					}
				}
				n := len(b.frames)
				b.mu.Unlock()
				if n > 1 && len(got) > 0 && a.WriteStalled(time.Now()) == 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if len(got) != 1 || got[0].ID != 2 {
				t.Fatalf("requests received: %+v, want only id 2 (id 1's deadline passed while it waited)", got)
			}
			if got[0].Timeout > 5*time.Second-600*time.Millisecond {
				t.Fatalf("request 2 arrived with a timeout of %v: the time it waited is not subtracted", got[0].Timeout)
			}
			t.Logf("request 2 (5 s deadline) left with %v; request 1 (300 ms) was withdrawn", got[0].Timeout.Round(time.Millisecond))
		})
	}
}

// gatedCollector returns a collector whose HandleFrame waits until open
// is called (at the latest when the test ends).
func gatedCollector(t *testing.T) (*collector, func()) {
	b := newCollector()
	b.gate = make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(b.gate) }) }
	t.Cleanup(open) // runs before pairWith's cleanup, registered earlier
	return b, open
}

// stopReading sends a frame to a peer whose collector is gated, so that
// its receive loop stops on it and reads nothing more.
func stopReading(t *testing.T, a *stream.Conn) {
	t.Helper()
	if err := a.WriteFrame(context.Background(), frame(0, 0)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
}

// TestWriteStalledWhilePeerReadsNothing: WriteStalled grows while the
// socket takes nothing and falls back to zero once the peer reads.
func TestWriteStalledWhilePeerReadsNothing(t *testing.T) {
	b, open := gatedCollector(t)
	a, _ := pairWith(t, b)
	if d := a.WriteStalled(time.Now()); d != 0 {
		t.Fatalf("an idle conn reports a stall of %v", d)
	}
	big := make([]byte, 32<<20)
	binary.BigEndian.PutUint32(big, uint32(len(big)-wire.PrefixLen))
	big[4], big[5] = wire.Version, byte(wire.TypePing)
	stopReading(t, a)
	if err := a.WriteFrame(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	a.WriteStalled(time.Now()) // the first look takes the raw byte count
	time.Sleep(200 * time.Millisecond)
	if d := a.WriteStalled(time.Now()); d < 150*time.Millisecond {
		t.Fatalf("stalled for %v while the peer reads nothing, want ≥ 150 ms", d)
	}
	open()
	for start := time.Now(); a.WriteStalled(time.Now()) > 100*time.Millisecond; {
		if time.Since(start) > 10*time.Second {
			t.Fatal("still stalled 10 s after the peer began to read")
		}
		time.Sleep(time.Millisecond)
	}
}
