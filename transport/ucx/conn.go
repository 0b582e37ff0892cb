//go:build ucx && cgo

package ucx

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/velo-messenger/velo/internal/credit"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// conn is one connection: a UCP endpoint and the frames that arrived on
// it. The owner goroutine queues frames in sequence order; the
// connection's own goroutine (run) hands them to the Handler, so that a
// slow handler holds up its own connection only, and returns credit to
// the peer as it goes.
type conn struct {
	t        *Transport
	remote   string
	accepted bool // the peer dialed; set before the connection is shared
	h        transport.Handler
	opened   onceChan // closed once the peer accepted (or the dial failed)
	limit    atomic.Int64

	id uint64 // this side's id of the connection: random, never 0

	// Owner goroutine only.
	remoteID uint64 // the peer's id of the connection
	ep       uint64 // the endpoint, set by the owner before any message
	epGone   bool   // the endpoint is closed (or closing): send nothing
	nextSeq  uint64 // the sequence number of the next data or close message due

	wmu sync.Mutex // serialises sends, so that sequence order is queue order
	seq uint64     // guarded by wmu

	mu       sync.Mutex
	arrived  sync.Cond     // an entry became ready, or the connection closed
	started  bool          // guarded by mu: the peer's window is known
	win      credit.Window // guarded by mu: bytes we may still send
	queue    []entry       // guarded by mu: what arrived, in sequence order
	queued   int           // guarded by mu: bytes in queue
	ended    bool          // guarded by mu: the peer closed or was lost; an end entry is queued
	closed   bool          // guarded by mu
	err      error         // guarded by mu: why the connection closed
	handling bool          // guarded by mu: a goroutine is in HandleFrame (run, or the owner)
	warm     bool          // guarded by mu: run has handled a response: the handshake is done
	consumed int           // run only: bytes handled since the last window message
	direct   int           // owner only: bytes the owner handled since its last window message
}

// entry is a frame in a connection's queue, or the connection's end.
type entry struct {
	seq   uint64
	frame []byte
	ready bool  // the frame's bytes are here (a rendezvous pull finished)
	end   error // not nil: the peer closed or was lost; close with it
}

// WholeFrames implements transport.WholeFrames: UCX pulls a large frame
// by rendezvous straight into the receiver's buffer, so the messenger
// sends frames up to the peer's MaxFrame whole rather than in 256 KiB
// chunks.
func (c *conn) WholeFrames() bool { return true }

var (
	_ transport.WholeFrames = (*conn)(nil)
	_ transport.Conn        = (*conn)(nil)
	_ transport.Staller     = (*conn)(nil)
	_ transport.ReadLimiter = (*conn)(nil)
)

func newConn(t *Transport, remote string, accepted bool) *conn {
	c := &conn{t: t, remote: remote, accepted: accepted, opened: newOnceChan(), id: newID()}
	c.win.Init(&c.mu)
	c.arrived.L = &c.mu
	c.limit.Store(int64(t.o.MaxFrame))
	return c
}

// newID returns a random connection id, never 0.
func newID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// onceChan is a channel closed at most once.
type onceChan struct {
	ch   chan struct{}
	once *sync.Once
}

func newOnceChan() onceChan { return onceChan{ch: make(chan struct{}), once: new(sync.Once)} }

func (o onceChan) close() { o.once.Do(func() { close(o.ch) }) }

// WriteFrame implements transport.Conn. It waits while the peer has no
// room, then hands a copy of the frame (length prefix removed) to the
// owner goroutine.
func (c *conn) WriteFrame(ctx context.Context, b []byte) error {
	if len(b) < wire.PrefixLen {
		return fmt.Errorf("velo: ucx: frame of %d bytes has no length prefix", len(b))
	}
	n := len(b) - wire.PrefixLen // the peer's MaxFrame is the peer's to enforce
	c.mu.Lock()
	// A sender may overdraw its credit by one frame, so that a frame
	// larger than what is left never waits forever; the receiver allows
	// for it.
	if err := c.waitCreditLocked(ctx); err != nil {
		c.mu.Unlock()
		return err
	}
	c.win.Take(n)
	c.mu.Unlock()

	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok && wire.IsTimedRequest(b) {
		left := time.Until(dl)
		if left <= 0 {
			c.wmu.Unlock()
			c.grant(uint64(n)) // withdrawn: its credit goes back
			return context.DeadlineExceeded
		}
		wire.StampTimeout(b, left)
	}
	o := op{kind: opSend, c: c, hdr: header{typ: msgData, value: c.seq}}
	if n >= zeroCopyMin {
		// UCX reads a large frame from the writer's buffer, pinned until
		// it is done (a rendezvous), rather than from a copy.
		o.zc = &zcSend{done: make(chan struct{})}
		p := &b[wire.PrefixLen]
		o.zc.pin.Pin(p)
		o.buf = cbuf{p: unsafe.Pointer(p), n: n}
	} else {
		o.buf = allocBuf(b[wire.PrefixLen:])
	}
	err := c.t.enqueue(o)
	c.seq++
	c.wmu.Unlock()
	if err == nil && o.zc != nil {
		<-o.zc.done
		err = o.zc.err
	}
	if err != nil {
		c.Close(err)
	}
	return err
}

// zeroCopyMin is the smallest frame that UCX sends from the writer's own
// buffer (WriteFrame waits until it is sent) instead of a copy.
const zeroCopyMin = 1 << 20

// waitCreditLocked waits until the peer has room, the connection closes,
// or ctx ends. Called with mu held.
func (c *conn) waitCreditLocked(ctx context.Context) error {
	if err := c.win.Wait(ctx, func() bool { return c.closed }); err != nil {
		return err // not sent: withdrawn
	}
	if c.closed {
		return c.err
	}
	return nil
}

// WriteStalled implements transport.Staller: how long a sender has waited
// for credit that the peer does not grant.
func (c *conn) WriteStalled(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.win.Stalled(now)
}

// SetReadLimit implements transport.ReadLimiter.
func (c *conn) SetReadLimit(n int) {
	if n <= 0 || n > c.t.o.MaxFrame {
		n = c.t.o.MaxFrame
	}
	c.limit.Store(int64(n))
}

// Close implements transport.Conn. The peer is told, unless it closed
// first or was lost; frames still queued are dropped.
func (c *conn) Close(reason error) error {
	if reason == nil {
		reason = transport.ErrClosed
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.err = reason
	notify := c.started && !c.ended
	c.queue, c.queued = nil, 0
	c.win.Wake()
	c.arrived.Broadcast()
	c.mu.Unlock()
	c.opened.close()
	if notify {
		msg := reason.Error()
		if len(msg) > maxReason {
			msg = msg[:maxReason]
		}
		c.wmu.Lock()
		c.t.enqueue(op{kind: opSend, c: c, buf: allocBuf([]byte(msg)), hdr: header{typ: msgClose, value: c.seq}})
		c.seq++
		c.wmu.Unlock()
	}
	c.t.enqueue(op{kind: opCloseEP, c: c, force: !notify})
	return nil
}

// maxReason bounds the reason a close message carries.
const maxReason = 256

// LocalAddr implements transport.Conn.
func (c *conn) LocalAddr() string { return c.t.addr }

// RemoteAddr implements transport.Conn: the address dialed, or "ucx" for
// an accepted connection (UCX does not tell the peer's address).
func (c *conn) RemoteAddr() string {
	if c.remote == "" {
		return Name
	}
	return c.remote
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// start records the peer's window: the connection is usable.
func (c *conn) start(credit int) {
	c.mu.Lock()
	c.started = true
	c.win.Set(credit)
	c.mu.Unlock()
	c.opened.close()
}

// fail ends a dial that did not connect.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	c.mu.Unlock()
	c.opened.close()
	c.t.enqueue(op{kind: opCloseEP, c: c, force: true})
}

// run hands queued frames to the handler until the connection closes and
// calls Closed once at the end.
func (c *conn) run() {
	defer c.t.wg.Done()
	for {
		c.mu.Lock()
		for !c.closed && (len(c.queue) == 0 || !c.queue[0].ready || c.handling) {
			c.arrived.Wait()
		}
		if c.closed {
			for c.handling { // the owner is handing over a response
				c.arrived.Wait()
			}
			reason := c.err
			c.mu.Unlock()
			c.h.Closed(reason)
			return
		}
		e := c.queue[0]
		c.queue[0] = entry{}
		c.queue = c.queue[1:]
		c.queued -= len(e.frame)
		c.handling = e.end == nil
		c.mu.Unlock()
		if e.end != nil {
			c.Close(e.end)
			continue
		}
		err := c.h.HandleFrame(e.frame)
		c.mu.Lock()
		c.handling = false
		if !c.warm && wire.FrameType(e.frame) == wire.TypeResponse {
			c.warm = true
		}
		c.mu.Unlock()
		if err != nil {
			c.Close(err)
			continue
		}
		c.consumed += len(e.frame)
		if c.consumed >= c.t.o.Window/2 {
			c.t.enqueue(op{kind: opSend, c: c, buf: allocBuf(nil), hdr: header{typ: msgWindow, value: uint64(c.consumed)}})
			c.consumed = 0
		}
	}
}

var errDropped = errors.New("velo: ucx: connection closed")

// admit checks a data or close message of n bytes with sequence number seq
// and reserves its place in the queue. Owner only. errDropped: the
// connection is closed here, drop the message quietly.
func (c *conn) admit(seq uint64, n int, isClose bool, count int) error {
	if seq != c.nextSeq {
		return fmt.Errorf("velo: ucx: message %d arrived when %d was due", seq, c.nextSeq)
	}
	switch {
	case count < 1 || count > maxBatch:
		return fmt.Errorf("velo: ucx: a batch of %d frames", count)
	case count > 1:
		if n > count*(batchEntry+int(c.limit.Load())) {
			return fmt.Errorf("velo: ucx: a batch of %d frames in %d bytes", count, n)
		}
	case !isClose:
		if err := checkFrame(n, int(c.limit.Load())); err != nil {
			return err
		}
	case n > maxReason:
		return fmt.Errorf("velo: ucx: close message of %d bytes", n)
	}
	c.nextSeq += uint64(count)
	if count > 1 {
		n -= count * batchEntry // the queue holds the frames, not their lengths
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed || c.ended:
		return errDropped
	case c.queued+n > c.t.o.Window+c.t.o.MaxFrame:
		return errors.New("velo: ucx: the peer sent beyond its window")
	}
	if !isClose {
		for i := range count {
			c.queue = append(c.queue, entry{seq: seq + uint64(i)})
		}
		c.queued += n
	}
	return nil
}

// readyBatch fills the entries of a batch message's frames, which start at
// seq; a batch that does not parse closes the connection. Owner only.
func (c *conn) readyBatch(seq uint64, b []byte, count int) {
	frames, err := splitBatch(b, count, int(c.limit.Load()))
	if err != nil {
		c.Close(err)
		return
	}
	for i, f := range frames {
		c.ready(seq+uint64(i), f)
	}
}

// ready fills the entry of seq with its bytes. Owner only.
func (c *conn) ready(seq uint64, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The queue holds consecutive sequence numbers (an end entry comes
	// last and nothing after it), so seq's place is its distance from the
	// head's.
	if len(c.queue) == 0 {
		return // dropped when the connection closed
	}
	i := seq - c.queue[0].seq
	if i >= uint64(len(c.queue)) {
		return
	}
	if e := &c.queue[i]; e.seq == seq && !e.ready && e.end == nil {
		e.frame = frame
		e.ready = true
		if i == 0 {
			c.arrived.Signal()
		}
	}
}

// handleDirect hands the response frame of seq, just admitted, to the
// Handler on the owner goroutine itself, when nothing is queued before it
// and run is idle: a response only wakes the caller waiting for it, and
// skipping run saves a goroutine hand-off per call. It reports false, with
// nothing done, when run must handle it (call ready then). Owner only.
func (c *conn) handleDirect(seq uint64, frame []byte) bool {
	c.mu.Lock()
	if !c.warm || c.handling || c.closed || len(c.queue) != 1 || c.queue[0].seq != seq {
		c.mu.Unlock()
		return false
	}
	c.queue = c.queue[:0]
	c.queued -= len(frame)
	c.handling = true
	c.mu.Unlock()
	err := c.h.HandleFrame(frame)
	c.mu.Lock()
	c.handling = false
	c.arrived.Signal() // run may wait for the turn, or to call Closed
	c.mu.Unlock()
	if err != nil {
		c.Close(err)
		return true
	}
	c.direct += len(frame)
	if c.direct >= c.t.o.Window/2 {
		c.t.batch = append(c.t.batch, send{ep: c.ep, buf: allocBuf(nil),
			hdr: header{typ: msgWindow, value: uint64(c.direct), to: c.remoteID, from: c.id}})
		c.direct = 0
	}
	return true
}

// peerClosed queues the connection's end: what the peer sent before is
// still handled, then the connection closes with reason.
func (c *conn) peerClosed(reason string) {
	c.end(fmt.Errorf("velo: ucx: closed by the peer: %s", reason))
}

// lost is peerClosed for an endpoint that UCX reports as failed; a dial
// still waiting for its accept fails.
func (c *conn) lost(err error) {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		c.fail(err)
		return
	}
	c.end(err)
}

func (c *conn) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ended {
		return
	}
	c.ended = true
	c.queue = append(c.queue, entry{ready: true, end: err})
	if len(c.queue) == 1 {
		c.arrived.Signal()
	}
}

// grant adds credit returned by the peer.
func (c *conn) grant(n uint64) {
	c.mu.Lock()
	c.win.Grant(int(min(n, uint64(MaxWindow)*2)))
	c.mu.Unlock()
}
