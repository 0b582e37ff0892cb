package mem

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// maxHeld bounds the bytes that one end's delayed frames may hold; past it
// the writer waits, as a writer waits for room in a socket's send buffer.
// A frame larger than the bound is taken when nothing else is held.
const maxHeld = 4 << 20

// faultConn is one end of a connection as its stream.Conn sees it: reads
// come straight from the pipe; writes go through the network's faults,
// frame by frame, on their way to the other end.
//
// The pipe carries a byte stream, but the faults act on whole frames: the
// writer's bytes are cut at the frame boundaries that the length prefixes
// give (internal/wire), and each frame meets its fate whole. A frame that
// goes through untouched, with nothing held ahead of it, is written to the
// pipe at once, in the writer's own call, batched with its neighbours as
// the writer batched them; a delayed frame, and every frame behind it
// while it waits, is held in a queue that the end's pump goroutine writes
// out, each frame at its time and in order.
type faultConn struct {
	net.Conn          // the pipe end: reads, deadlines
	net      *Network // where the faults are
	from, to string   // this end's name, the other end's

	// wmu is held by Write: one writer at a time, across a blocking
	// write to the pipe. The frame being written is guarded by it.
	wmu    sync.Mutex
	hdr    [wire.PrefixLen]byte // the frame's length prefix, as collected
	nhdr   int                  // bytes of hdr collected; the fate is drawn when it is full
	left   int                  // bytes of the frame still to come after its prefix
	fate   fate                 // the frame's
	queued bool                 // the frame goes through the queue
	cur    []byte               // the frame, when queued

	// inFlight counts the frames queued or being written by the pump: a
	// frame may go straight to the pipe only when it is zero. Raised
	// under mu, lowered by the pump once the frame is written.
	inFlight atomic.Int64

	mu      sync.Mutex
	cond    sync.Cond   // signalled when the queue changes or the conn breaks
	queue   []heldFrame // guarded by mu: frames waiting for their time, in order
	held    int         // guarded by mu: bytes in queue
	err     error       // guarded by mu: why writes fail (closed, or the pipe broke)
	pumping bool        // guarded by mu: the pump was started

	pumpWG    sync.WaitGroup
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
}

// heldFrame is a frame in the queue and the time it is due.
type heldFrame struct {
	b  []byte
	at time.Time
}

func newFaultConn(nc net.Conn, n *Network, from, to string) *faultConn {
	c := &faultConn{Conn: nc, net: n, from: from, to: to, done: make(chan struct{})}
	c.cond.L = &c.mu
	return c
}

// Write implements net.Conn: it hands each frame of b to its fate.
func (c *faultConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	// b[run:i] are bytes of frames that go straight through, not written
	// to the pipe yet: they go out in one write, before anything that
	// does not go straight through.
	run, i := 0, 0
	flush := func() error {
		if run == i {
			return nil
		}
		_, err := c.Conn.Write(b[run:i])
		run = i
		return err
	}
	for i < len(b) {
		if c.nhdr < wire.PrefixLen {
			// A frame's length prefix, maybe split across writes.
			k := min(wire.PrefixLen-c.nhdr, len(b)-i)
			earlier := c.nhdr // bytes of it that earlier writes gave
			copy(c.hdr[c.nhdr:], b[i:i+k])
			c.nhdr += k
			if c.nhdr < wire.PrefixLen {
				// Its fate is not drawn yet: keep it aside.
				if err := flush(); err != nil {
					return run, c.broke(err)
				}
				i += k
				run = i
				break
			}
			c.left = wire.FrameLen(c.hdr[:])
			c.fate = c.net.fate(c.from, c.to)
			c.queued = !c.fate.drop && (c.fate.delay > 0 || c.inFlight.Load() > 0)
			switch {
			case c.fate.drop, c.queued:
				if err := flush(); err != nil {
					return run, c.broke(err)
				}
				if c.queued {
					c.cur = append(make([]byte, 0, wire.PrefixLen+min(c.left, 64<<10)), c.hdr[:]...)
				}
				i += k
				run = i
			default:
				if earlier > 0 {
					// The prefix began in an earlier write: its first
					// bytes go out ahead of the rest.
					if err := flush(); err != nil {
						return run, c.broke(err)
					}
					if _, err := c.Conn.Write(c.hdr[:earlier]); err != nil {
						return run, c.broke(err)
					}
				}
				i += k
			}
		} else {
			k := min(c.left, len(b)-i)
			switch {
			case c.fate.drop:
				i += k
				run = i
			case c.queued:
				c.cur = append(c.cur, b[i:i+k]...)
				i += k
				run = i
			default:
				i += k
			}
			c.left -= k
		}
		if c.nhdr == wire.PrefixLen && c.left == 0 {
			// The frame is whole.
			if c.queued {
				if err := c.enqueue(c.cur, c.fate.delay); err != nil {
					return run, err
				}
			}
			c.nhdr, c.queued, c.cur, c.fate = 0, false, nil, fate{}
		}
	}
	if err := flush(); err != nil {
		return run, c.broke(err)
	}
	return len(b), nil
}

// broke records err, a failed write to the pipe, as the reason every
// later write fails, and returns it.
func (c *faultConn) broke(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	return err
}

// enqueue holds frame b for d, behind the frames held already, waiting for
// room first.
func (c *faultConn) enqueue(b []byte, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && c.held > 0 && c.held+len(b) > maxHeld {
		c.cond.Wait()
	}
	if c.err != nil {
		return c.err
	}
	c.queue = append(c.queue, heldFrame{b: b, at: time.Now().Add(d)})
	c.held += len(b)
	c.inFlight.Add(1)
	if !c.pumping {
		c.pumping = true
		c.pumpWG.Add(1)
		go c.pump()
	}
	c.cond.Broadcast()
	return nil
}

// pump writes the held frames to the pipe, each once it is due and after
// those ahead of it, until the conn closes or the pipe breaks. A frame due
// while its ends are partitioned is lost, as a frame on the wire is when
// the link goes down.
func (c *faultConn) pump() {
	defer c.pumpWG.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	c.mu.Lock()
	for {
		for c.err == nil && len(c.queue) == 0 {
			c.cond.Wait()
		}
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		f := c.queue[0]
		if wait := time.Until(f.at); wait > 0 {
			c.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.done:
				return
			}
			c.mu.Lock()
			continue
		}
		c.queue[0] = heldFrame{}
		c.queue = c.queue[1:]
		c.held -= len(f.b)
		c.cond.Broadcast() // room for a waiting writer
		c.mu.Unlock()
		var err error
		if !c.net.partitioned(c.from, c.to) {
			_, err = c.Conn.Write(f.b)
		}
		c.inFlight.Add(-1)
		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
			c.cond.Broadcast()
		}
	}
}

// Close implements net.Conn. Frames still held are lost. It waits for the
// pump to return.
func (c *faultConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = io.ErrClosedPipe // what a closed net.Pipe end says
		}
		c.queue, c.held = nil, 0
		c.cond.Broadcast()
		c.mu.Unlock()
		close(c.done)
		c.closeErr = c.Conn.Close() // ends a write blocked on the pipe
		c.pumpWG.Wait()
	})
	return c.closeErr
}

// LocalAddr implements net.Conn: this end's name.
func (c *faultConn) LocalAddr() net.Addr { return addr(c.from) }

// RemoteAddr implements net.Conn: the other end's name.
func (c *faultConn) RemoteAddr() net.Addr { return addr(c.to) }

// addr is an endpoint's name as a net.Addr.
type addr string

func (addr) Network() string  { return Name }
func (a addr) String() string { return string(a) }
