package stream_test

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// collector is a transport.Handler that keeps every frame it is given.
type collector struct {
	mu     sync.Mutex
	frames [][]byte
	got    chan struct{} // signalled after each frame
	closed chan error
}

func newCollector() *collector {
	return &collector{got: make(chan struct{}, 1), closed: make(chan error, 1)}
}

func (c *collector) HandleFrame(f []byte) error {
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
	b = newCollector()
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
	for _, procs := range []int{1, 2} {
		t.Run("GOMAXPROCS="+string(rune('0'+procs)), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
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
							err = a.QueueFrame(frame(w, i))
						} else {
							err = a.WriteFrame(frame(w, i))
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
