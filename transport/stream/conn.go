// Package stream carries velo frames over any net.Conn: the shared
// implementation behind the TCP, UDS and in-memory transports. It adds write
// coalescing and a receive loop; it knows nothing of what frames mean.
package stream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/rawio"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// Options tune a Conn. The zero value means defaults.
type Options struct {
	// MaxFrame is the largest frame read, length prefix excluded.
	// Zero: wire.DefaultMaxFrame (16 MiB).
	MaxFrame int
	// ReadBuffer is the size of the receive buffer in bytes. Zero: 64 KiB.
	ReadBuffer int
	// MaxPending bounds the bytes queued for writing while another writer is
	// on the socket; further writers wait. Zero: 512 KiB (a connection
	// keeps up to two such buffers while it is busy; larger ones measured
	// no faster).
	MaxPending int
}

func (o Options) withDefaults() Options {
	if o.MaxFrame <= 0 {
		o.MaxFrame = wire.DefaultMaxFrame
	}
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = 64 << 10
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 512 << 10
	}
	return o
}

// Conn is a transport.Conn over a net.Conn.
//
// Writes are coalesced without a writer goroutine: the first writer to find
// the socket idle becomes the flusher and writes its frame directly; frames
// written meanwhile by others are appended to a pending buffer, which the
// flusher writes out in one system call before it returns. So a lone caller
// pays one write and no goroutine hop, and a burst of callers shares writes.
type Conn struct {
	nc   net.Conn
	h    transport.Handler
	opts Options

	mu       sync.Mutex
	room     sync.Cond // signalled when pending shrinks or the conn breaks
	pending  []byte    // guarded by mu: frames waiting for the flusher
	spare    []byte    // guarded by mu: the other buffer, reused
	flushing bool      // guarded by mu: a writer owns the socket
	noYield  int       // guarded by mu: flusher's turns left without a yield
	err      error     // guarded by mu: first reason the conn broke
	writer   bool      // guarded by mu: writeLoop was started

	kick     chan struct{}  // hands the flusher's turn to writeLoop
	writerWG sync.WaitGroup // writeLoop, waited for by Serve

	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

var (
	_ transport.Conn   = (*Conn)(nil)
	_ transport.Queuer = (*Conn)(nil)
)

// New wraps nc; bind gives it its Handler. Call Serve to run the receive
// loop.
func New(nc net.Conn, bind transport.Binder, opts Options) *Conn {
	c := &Conn{nc: rawio.Wrap(nc), opts: opts.withDefaults(), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	c.room.L = &c.mu
	c.h = bind(c)
	return c
}

// WriteFrame implements transport.Conn.
func (c *Conn) WriteFrame(b []byte) error {
	c.mu.Lock()
	for c.err == nil && c.flushing && len(c.pending) >= c.opts.MaxPending {
		c.room.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if c.flushing {
		c.pending = append(c.pending, b...)
		c.mu.Unlock()
		return nil
	}
	c.flushing = true
	// The socket is ours. Before the system call, let the goroutines that
	// are ready to run go first: those that write meanwhile append their
	// frames to pending, and all go out in this one write. With one P (or
	// a burst of answers on one worker) this is what turns a write per
	// frame into a write per batch, and it costs a lone caller a fraction
	// of a microsecond. But a yield puts the flusher at the back of the
	// scheduler's global queue: in a process whose CPU-bound goroutines
	// keep every P busy it waits there for their time slices, so a yield
	// that took long turns yielding off for the next turns.
	yield := c.noYield == 0
	if !yield {
		c.noYield--
	}
	c.mu.Unlock()
	if yield {
		start := time.Now()
		runtime.Gosched()
		if time.Since(start) > slowYield {
			c.mu.Lock()
			c.noYield = noYieldTurns
			c.mu.Unlock()
		}
	}

	c.mu.Lock()
	var err error
	if len(c.pending) > 0 && len(b) <= copyMax && c.err == nil {
		// Others wrote meanwhile: ours joins their frames, and the drain
		// below writes all in one system call. Ours goes last, which no
		// writer can tell from going first: each of them saw its own
		// frames accepted in order.
		c.pending = append(c.pending, b...)
	} else {
		// Write the caller's frame without copying it; the drain below
		// writes what others appended.
		c.mu.Unlock()
		_, err = c.nc.Write(b)
		c.mu.Lock()
	}
	err = c.drainLocked(err)
	c.mu.Unlock()
	if err != nil {
		c.Close(err)
		return c.closeErr()
	}
	return nil
}

// drainLocked is the end of a flusher's turn: it writes out what other
// writers appended to pending meanwhile, until pending is empty or a write
// fails (err, the flusher's own write result, stops it at once), then gives
// up the socket. Called and returns with mu held; mu is released around
// each write.
func (c *Conn) drainLocked(err error) error {
	for err == nil && len(c.pending) > 0 && c.err == nil {
		out := c.pending
		c.pending = c.spare[:0]
		c.room.Broadcast()
		c.mu.Unlock()
		_, err = c.nc.Write(out)
		c.mu.Lock()
		c.keepSpare(out)
	}
	c.flushing = false
	if err == nil {
		err = c.err // closed while we were writing
	}
	c.room.Broadcast()
	return err
}

// A flusher's yield that takes longer than slowYield means the scheduler
// is busy with goroutines that do not block soon; the connection's next
// noYieldTurns flushers write without yielding.
const (
	slowYield    = time.Millisecond
	noYieldTurns = 64
)

// copyMax is the largest frame a flusher copies to join others in one
// write; a larger one gets a write of its own.
const copyMax = 64 << 10

// keepSpare keeps a written pending buffer for reuse, unless it grew huge.
// mu must be held.
func (c *Conn) keepSpare(out []byte) {
	// pending may pass MaxPending by one frame, and append doubles its
	// capacity: keep a buffer up to twice the bound, or every burst that
	// reaches it would regrow one from scratch.
	if cap(out) <= 2*c.opts.MaxPending {
		c.spare = out[:0]
	} else {
		c.spare = nil
	}
}

// QueueFrame implements transport.Queuer: it copies b into the pending
// buffer and returns; the connection's writer goroutine (started on first
// use) writes it soon, together with whatever else was queued meanwhile.
// A sender of one-way messages thus pays a copy, not a system call, per
// message. When pending holds MaxPending bytes, QueueFrame waits for room.
func (c *Conn) QueueFrame(b []byte) error {
	c.mu.Lock()
	for c.err == nil && len(c.pending) >= c.opts.MaxPending {
		c.room.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.pending = append(c.pending, b...)
	if !c.flushing {
		// Nobody is on the socket: hand the turn to the writer.
		c.flushing = true
		if !c.writer {
			c.writer = true
			c.writerWG.Add(1)
			go c.writeLoop()
		}
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	return nil
}

// writeLoop takes the flusher's turn that QueueFrame hands it, until the
// connection closes.
func (c *Conn) writeLoop() {
	defer c.writerWG.Done()
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		c.mu.Lock()
		err := c.drainLocked(nil)
		c.mu.Unlock()
		if err != nil {
			c.Close(err)
		}
	}
}

// closeFlush bounds how long Close waits for a flusher to write out the
// frames that WriteFrame already accepted.
const closeFlush = time.Second

// Close implements transport.Conn.
func (c *Conn) Close(reason error) error {
	if reason == nil {
		reason = transport.ErrClosed
	}
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.flushing && c.err == nil {
			// WriteFrame returned nil for the frames in pending (a goaway,
			// the last answers of a drain): let the flusher write them out
			// before the socket closes, for closeFlush at most, so that a
			// peer that does not read cannot hold Close.
			c.nc.SetWriteDeadline(time.Now().Add(closeFlush))
			for c.flushing {
				c.room.Wait()
			}
		}
		if c.err == nil {
			c.err = reason
		}
		c.pending = nil
		c.room.Broadcast()
		c.mu.Unlock()
		close(c.done)
		c.nc.Close()
	})
	return nil
}

func (c *Conn) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed once the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// LocalAddr implements transport.Conn.
func (c *Conn) LocalAddr() string { return addrString(c.nc.LocalAddr()) }

// RemoteAddr implements transport.Conn.
func (c *Conn) RemoteAddr() string { return addrString(c.nc.RemoteAddr()) }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Serve reads frames and hands them to the handler until the connection
// ends, then calls the handler's Closed once. It returns when done.
func (c *Conn) Serve() {
	fr := wire.NewFrameReader(bufio.NewReaderSize(c.nc, c.opts.ReadBuffer), c.opts.MaxFrame)
	var reason error
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			reason = err
			break
		}
		if err := c.h.HandleFrame(f); err != nil {
			reason = err
			break
		}
	}
	c.Close(reason)
	c.writerWG.Wait()
	// Report the first reason: a Close by our side wins over the read error
	// that it caused.
	reason = c.closeErr()
	if errors.Is(reason, io.EOF) {
		reason = io.EOF
	}
	c.h.Closed(reason)
}
