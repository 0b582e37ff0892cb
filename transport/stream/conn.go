// Package stream carries velo frames over any net.Conn: the shared
// implementation behind the TCP, UDS and in-memory transports. It adds write
// coalescing and a receive loop; it knows nothing of what frames mean.
package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/rawio"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// Defaults applied to the zero fields of Options.
const (
	// DefaultMaxFrame is the default largest frame read, length prefix
	// excluded: 16 MiB.
	DefaultMaxFrame = wire.DefaultMaxFrame
	// DefaultReadBuffer is the default receive buffer: 64 KiB.
	DefaultReadBuffer = 64 << 10
	// DefaultMaxPending is the default bound on the bytes queued for
	// writing: 512 KiB (a connection keeps up to two such buffers while it
	// is busy; larger ones measured no faster).
	DefaultMaxPending = 512 << 10
)

// Options tune a Conn. The zero value of each field means its default;
// a negative one is an error (Validate).
type Options struct {
	// MaxFrame is the largest frame read, length prefix excluded, in
	// bytes. Zero: DefaultMaxFrame (16 MiB).
	MaxFrame int
	// ReadBuffer is the size of the receive buffer, in bytes. Zero:
	// DefaultReadBuffer (64 KiB).
	ReadBuffer int
	// MaxPending bounds the bytes queued for writing while another writer
	// is on the socket; further writers wait. Zero: DefaultMaxPending
	// (512 KiB).
	MaxPending int
	// CallerReads lets a goroutine that waits for a response read the
	// connection itself (transport.Leader), when the process has more
	// than one P (GOMAXPROCS at New): with one, a hand-off between
	// goroutines wakes no thread and costs less than a caller's turn. It
	// needs a net.Conn with read deadlines after which Read may be called
	// again and goes on where it stopped: TCP and Unix sockets, TLS over
	// them, net.Pipe. The transports over those set it.
	CallerReads bool
}

// Validate reports the fields no default can stand in for: negative ones.
// New panics on options it rejects, and NewGroup's Serve and Accept
// return its error; velo's transports call it first and report the error
// with their own name.
func (o Options) Validate() error {
	return errors.Join(
		optcheck.NotNegative("stream", "MaxFrame", o.MaxFrame),
		optcheck.NotNegative("stream", "ReadBuffer", o.ReadBuffer),
		optcheck.NotNegative("stream", "MaxPending", o.MaxPending),
	)
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = DefaultReadBuffer
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	return o
}

// Conn is a transport.Conn over a net.Conn.
//
// Writes are coalesced without a writer goroutine: the first writer to find
// the socket idle becomes the flusher and writes its frame directly; frames
// written meanwhile by others are appended to a pending buffer, which the
// flusher writes out before it returns. So a lone caller pays one write and
// no goroutine hop, and a burst of callers shares writes.
//
// No caller ever waits on the socket. On TCP and Unix sockets the flusher
// writes without blocking (internal/rawio); what does not fit into the
// socket's send buffer is handed to the connection's writer goroutine,
// which waits for room. Conns whose writes cannot be tried without
// blocking (the HTTP and gRPC streams, in-memory pipes) hand a frame whose
// ctx can end to the writer at once. A caller waits only for room in the
// pending buffer (MaxPending), and that wait ends with its ctx.
type Conn struct {
	nc   net.Conn
	orig net.Conn  // nc as given to New, before rawio wrapped it: for PeerIdentity
	try  tryWriter // nc's non-blocking write; nil if it has none
	h    transport.Handler
	opts Options
	fr   *wire.FrameReader // used by the receive goroutine only
	// limit is the frame limit that Serve starts with (SetReadLimit
	// before Serve); zero: MaxFrame.
	limit int

	mu      sync.Mutex
	room    sync.Cond // signalled when pending shrinks, the socket is given up, or the conn breaks
	head    []byte    // guarded by mu: the rest of a write whose first bytes are on the socket; goes out first, as it is
	pending []byte    // guarded by mu: frames waiting for the flusher
	stamps  []stamp   // guarded by mu: the requests in pending whose timeout is set when they are written
	spare   []byte    // guarded by mu: the other buffer, reused
	// flushing is set while a writer owns the socket: a caller's
	// WriteFrame, or the writer goroutine, which keeps it until head and
	// pending are written out.
	flushing bool // guarded by mu
	noYield  int  // guarded by mu: flusher's turns left without a yield
	// crowded is set when a writer found the socket taken and queued
	// its frame behind the flusher, or the receive loop read frames that
	// were already buffered (a burst: the callers it answers, the
	// handlers it starts, are about to write), and cleared by the next
	// flusher's turn: writers come together, and the next flusher yields
	// to let them join its write.
	crowded atomic.Bool
	oneP    bool           // GOMAXPROCS was 1 at New: flushers always yield
	crowd   transport.Busy // the Handler, if it tells: Crowded counts as crowded
	err     error          // guarded by mu: first reason the conn broke
	writer  bool           // guarded by mu: writeLoop was started
	// writerTurn is set while the flusher's turn is writeLoop's.
	writerTurn bool      // guarded by mu
	since      time.Time // guarded by mu: when the blocking write in progress began, or last made progress; zero when none
	seen       uint64    // guarded by mu: nc's byte count when since was last moved (raw sockets)
	flushEnd   bool      // guarded by mu: Close stopped waiting for the flusher

	kick     chan struct{}  // hands the flusher's turn to writeLoop
	writerWG sync.WaitGroup // writeLoop, waited for by Serve

	closeOnce sync.Once
	done      chan struct{} // closed by Close

	// The receive side: one goroutine at a time holds the read turn and
	// uses br, fr and readAt, Serve's or a caller's in Lead; rmu orders
	// the turns.
	br        *bufio.Reader
	readAt    int64 // transport.Mono of the last read that brought bytes
	rmu       sync.Mutex
	turn      turn   // guarded by rmu
	leads     uint64 // guarded by rmu: turns taken by callers in Lead
	handed    []byte // guarded by rmu: a frame a caller read and left to Serve
	readErr   error  // guarded by rmu: the error that ended a caller's turn
	cut       bool   // guarded by rmu: the read deadline was set to end a caller's turn
	wakeServe chan struct{}
	busy      transport.Busy // the Handler, if it tells; nil: Serve keeps the turn
	// Serve's goroutine only: requests read, the count last seen, and
	// until when the connection counts as carrying requests.
	reqs, reqsSeen uint64
	busyUntil      time.Time
	linger         *time.Timer

	// Relief (relief.go): inlining is set while the Handler does work at
	// length on Serve's goroutine (BeginInline); relieved while another
	// goroutine reads in its place, and serveBack once Serve wants the
	// turn back.
	inlining  bool // guarded by rmu
	relieved  atomic.Bool
	serveBack atomic.Bool
	reliefWG  sync.WaitGroup
	endOnce   sync.Once
}

// turn says who reads the connection.
type turn uint8

const (
	turnServe  turn = iota // Serve's goroutine, or on its way to
	turnFree               // nobody: the next caller may lead, or Serve takes it back
	turnCaller             // a caller in Lead
	turnRelief             // a relief reader, while Serve's goroutine works (Relieve)
)

// tryWriter is a net.Conn's write that never blocks (internal/rawio).
type tryWriter interface {
	TryWrite(b []byte) (int, error)
	Written() uint64
}

// stamp is a request in pending whose timeout field is rewritten when it
// is written to the socket (wire.StampTimeout), or which is withdrawn if
// its deadline passed first.
type stamp struct {
	off      int // where the frame starts in pending
	deadline time.Time
}

var (
	_ transport.Conn    = (*Conn)(nil)
	_ transport.Queuer  = (*Conn)(nil)
	_ transport.Staller = (*Conn)(nil)

	_ transport.ReadLimiter = (*Conn)(nil)
	_ transport.Leader      = (*Conn)(nil)
	_ transport.Reliever    = (*Conn)(nil)
	_ transport.Stamper     = (*Conn)(nil)
)

// stampedReader reads the connection for the receive buffer, noting when
// each read brought bytes (ReadAt).
type stampedReader struct{ c *Conn }

func (r stampedReader) Read(b []byte) (int, error) {
	n, err := r.c.nc.Read(b)
	if n > 0 {
		r.c.readAt = transport.Mono()
	}
	return n, err
}

// ReadAt implements transport.Stamper.
func (c *Conn) ReadAt() int64 { return c.readAt }

// SetReadLimit implements transport.ReadLimiter.
func (c *Conn) SetReadLimit(n int) {
	n = min(n, c.opts.MaxFrame)
	if c.fr == nil {
		c.limit = n // the Binder, before Serve
		return
	}
	c.fr.SetMax(n)
}

// New wraps nc; bind gives it its Handler. Call Serve to run the receive
// loop. New panics with Validate's error on options it rejects, as
// time.NewTicker does on a period that is not positive: a transport
// validates its options before it has connections.
func New(nc net.Conn, bind transport.Binder, opts Options) *Conn {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	c := &Conn{nc: rawio.Wrap(nc), orig: nc, opts: opts.withDefaults(), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	c.try, _ = c.nc.(tryWriter)
	c.oneP = runtime.GOMAXPROCS(0) == 1
	c.room.L = &c.mu
	c.h = bind(c)
	c.crowd, _ = c.h.(transport.Busy)
	c.wakeServe = make(chan struct{}, 1)
	if c.opts.CallerReads && !c.oneP {
		// With one P a hand-off between goroutines wakes no thread: it
		// costs less than a caller's turn (the locks, the ctx watch).
		c.busy = c.crowd
	}
	return c
}

// errExpired is returned for a request whose deadline passed before it
// could be handed to the socket: it was withdrawn, never sent.
var errExpired = fmt.Errorf("stream: request withdrawn: %w", context.DeadlineExceeded)

// WriteFrame implements transport.Conn.
func (c *Conn) WriteFrame(ctx context.Context, b []byte) error {
	deadline, timed := frameDeadline(ctx, b)
	c.mu.Lock()
	if len(b) > wire.PrefixLen && wire.FrameType(b[wire.PrefixLen:]) == wire.TypeChunk {
		if err := c.waitIdleLocked(ctx); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	if err := c.waitRoomLocked(ctx, true); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.flushing {
		c.crowded.Store(true)
		err := c.appendLocked(b, deadline, timed)
		c.mu.Unlock()
		return err
	}
	c.flushing = true
	if c.try == nil && ctx.Done() != nil {
		// A write on this conn may block, and this caller may not wait
		// for it: the writer goroutine writes the frame.
		err := c.appendLocked(b, deadline, timed)
		c.handOffLocked()
		c.mu.Unlock()
		return err
	}
	// The socket is ours. Before the system call, let the goroutines that
	// are ready to run go first: those that write meanwhile append their
	// frames to pending, and all go out in this one write. With one P (or
	// a burst of answers on one worker) this is what turns a write per
	// frame into a write per batch. With more Ps, writers that come
	// together find the socket taken (crowded) and the next flusher
	// yields; a lone caller does not, for a yield wakes another thread
	// (the runtime's wakep) and costs it a third of a round trip. A yield
	// puts the flusher at the back of the scheduler's global queue: in a
	// process whose CPU-bound goroutines keep every P busy it waits there
	// for their time slices, so a yield that took long turns yielding off
	// for the next turns.
	crowded := c.crowded.Load()
	if crowded {
		c.crowded.Store(false)
	} else if c.crowd != nil {
		crowded = c.crowd.Crowded()
	}
	yield := c.noYield == 0 && (c.oneP || crowded)
	if c.noYield > 0 {
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
	if c.err != nil {
		err = c.err
	} else if len(c.pending) > 0 && len(b) <= copyMax {
		// Others wrote meanwhile: ours joins their frames, and the drain
		// below writes all in one system call. Ours goes last, which no
		// writer can tell from going first: each of them saw its own
		// frames accepted in order.
		err = c.appendLocked(b, deadline, timed)
	} else if timed && !stampFrame(b, deadline, time.Now()) {
		err = errExpired // nothing of it was written: withdrawn
	} else {
		// Write the caller's frame without copying it; the drain below
		// writes what others appended.
		c.mu.Unlock()
		var n int
		n, err = c.writeSome(b)
		c.mu.Lock()
		if err == nil && n < len(b) {
			// The socket's buffer is full: the writer sends the rest,
			// first, and then what is pending.
			c.head = append(c.takeSpare(len(b)-n), b[n:]...)
			c.handOffLocked()
			c.mu.Unlock()
			return nil
		}
	}
	if err == nil || err == errExpired {
		if derr := c.drainLocked(); derr != nil {
			err = derr
		}
	} else {
		c.flushing = false
		c.room.Broadcast()
	}
	c.mu.Unlock()
	if err == errExpired {
		return err
	}
	if err != nil {
		c.Close(err)
		return c.closeErr()
	}
	return nil
}

// frameDeadline returns ctx's deadline if b is a request that carries
// one, whose timeout is then set when b is written.
func frameDeadline(ctx context.Context, b []byte) (time.Time, bool) {
	if !wire.IsTimedRequest(b) {
		return time.Time{}, false
	}
	return ctx.Deadline()
}

// stampFrame sets the timeout of the request frame b to the time left
// until deadline, and reports false instead if none is left.
func stampFrame(b []byte, deadline, now time.Time) bool {
	left := deadline.Sub(now)
	if left <= 0 {
		return false
	}
	wire.StampTimeout(b, left)
	return true
}

// writeSome writes b, or as much of it as the socket takes without
// blocking when nc can tell. A blocking write is timed for WriteStalled.
func (c *Conn) writeSome(b []byte) (int, error) {
	if c.try != nil {
		return c.try.TryWrite(b)
	}
	return len(b), c.writeAll(b)
}

// writeAll writes b, blocking as long as the socket needs, in steps of at
// most writeStep bytes so that WriteStalled sees progress.
func (c *Conn) writeAll(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), writeStep)
		c.mu.Lock()
		c.since = time.Now()
		c.mu.Unlock()
		_, err := c.nc.Write(b[:n])
		c.mu.Lock()
		c.since = time.Time{}
		c.mu.Unlock()
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// writeStep bounds one blocking write.
const writeStep = 64 << 10

// chunkYield bounds how long a chunk frame lets other frames go first.
const chunkYield = 2 * time.Millisecond

// waitIdleLocked holds a chunk of a large payload (wire.TypeChunk) while
// the socket is taken or frames are pending, for chunkYield at most: the
// frames of other calls go first, so that a small call waits behind the
// one chunk being written, not behind all of the payload's chunks that
// would otherwise be queued. Called with mu held.
func (c *Conn) waitIdleLocked(ctx context.Context) error {
	if c.err != nil || !c.flushing && len(c.pending) == 0 {
		return c.err
	}
	late := false
	t := time.AfterFunc(chunkYield, func() {
		c.mu.Lock()
		late = true
		c.room.Broadcast()
		c.mu.Unlock()
	})
	defer t.Stop()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			c.mu.Lock()
			c.room.Broadcast()
			c.mu.Unlock()
		})
		defer stop()
	}
	for c.err == nil && !late && (c.flushing || len(c.pending) > 0) {
		if err := ctx.Err(); err != nil {
			return err // not written: withdrawn
		}
		c.room.Wait()
	}
	return c.err
}

// waitRoomLocked waits while pending holds MaxPending bytes (and, with
// busy, only while someone owns the socket), until there is room, the conn
// breaks, or ctx ends. Called with mu held.
func (c *Conn) waitRoomLocked(ctx context.Context, busy bool) error {
	full := func() bool { return (!busy || c.flushing) && len(c.pending) >= c.opts.MaxPending }
	if c.err == nil && full() {
		if ctx.Done() != nil {
			stop := context.AfterFunc(ctx, func() {
				c.mu.Lock()
				c.room.Broadcast()
				c.mu.Unlock()
			})
			defer stop()
		}
		for c.err == nil && full() {
			if err := ctx.Err(); err != nil {
				return err // not written: withdrawn
			}
			c.room.Wait()
		}
	}
	return c.err
}

// appendLocked adds b to pending, remembering where a timed request
// starts; a request whose deadline already passed is not added.
func (c *Conn) appendLocked(b []byte, deadline time.Time, timed bool) error {
	if timed {
		if !time.Now().Before(deadline) {
			return errExpired
		}
		c.stamps = append(c.stamps, stamp{off: len(c.pending), deadline: deadline})
	}
	c.pending = append(c.pending, b...)
	return nil
}

// takePendingLocked returns pending for writing and starts a new one. The
// timed requests in it get the time their callers still wait; those whose
// deadline passed are cut out.
func (c *Conn) takePendingLocked() []byte {
	out := c.pending
	if len(c.stamps) > 0 {
		now := time.Now()
		cut := 0 // bytes removed so far
		for _, st := range c.stamps {
			off := st.off - cut
			n := wire.PrefixLen + wire.FrameLen(out[off:])
			if stampFrame(out[off:off+n], st.deadline, now) {
				continue
			}
			out = append(out[:off], out[off+n:]...)
			cut += n
		}
		c.stamps = c.stamps[:0]
	}
	c.pending = c.takeSpare(0)
	c.room.Broadcast()
	return out
}

// takeSpare returns the spare buffer, emptied, or a new one of capacity n.
func (c *Conn) takeSpare(n int) []byte {
	b := c.spare[:0]
	c.spare = nil
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	return b
}

// drainLocked is the end of a caller's turn as flusher: it writes out what
// other writers appended to pending meanwhile, until pending is empty, and
// gives up the socket; if the socket's buffer fills, the writer goroutine
// takes over. Called and returns with mu held; mu is released around each
// write.
func (c *Conn) drainLocked() error {
	var err error
	for err == nil && len(c.pending) > 0 && c.err == nil {
		out := c.takePendingLocked()
		c.mu.Unlock()
		var n int
		n, err = c.writeSome(out)
		c.mu.Lock()
		if err == nil && n < len(out) {
			c.head = out[n:]
			c.handOffLocked()
			return nil
		}
		c.keepSpare(out)
	}
	c.flushing = false
	if err == nil {
		err = c.err // closed while we were writing
	}
	c.room.Broadcast()
	return err
}

// handOffLocked gives the flusher's turn (flushing stays set) to the
// writer goroutine, starting it on first use. mu must be held.
func (c *Conn) handOffLocked() {
	c.writerTurn = true
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

// keepSpare keeps a written buffer for reuse, unless it grew huge. mu must
// be held.
func (c *Conn) keepSpare(out []byte) {
	// pending may pass MaxPending by one frame, and append doubles its
	// capacity: keep a buffer up to twice the bound, or every burst that
	// reaches it would regrow one from scratch.
	if cap(out) <= 2*c.opts.MaxPending && cap(out) > cap(c.spare) {
		c.spare = out[:0]
	}
}

// QueueFrame implements transport.Queuer: it copies b into the pending
// buffer and returns; the connection's writer goroutine (started on first
// use) writes it soon, together with whatever else was queued meanwhile.
// A sender of one-way messages thus pays a copy, not a system call, per
// message. When pending holds MaxPending bytes, QueueFrame waits for room,
// or for ctx to end.
func (c *Conn) QueueFrame(ctx context.Context, b []byte) error {
	deadline, timed := frameDeadline(ctx, b)
	c.mu.Lock()
	if err := c.waitRoomLocked(ctx, false); err != nil {
		c.mu.Unlock()
		return err
	}
	err := c.appendLocked(b, deadline, timed)
	if err == nil && !c.flushing {
		// Nobody is on the socket: hand the turn to the writer.
		c.flushing = true
		c.handOffLocked()
	}
	c.mu.Unlock()
	return err
}

// writeLoop takes the flusher's turn that others hand it, until the
// connection closes: it writes head, then pending, blocking on the socket
// as long as it must.
func (c *Conn) writeLoop() {
	defer c.writerWG.Done()
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		c.mu.Lock()
		if !c.writerTurn {
			c.mu.Unlock() // a kick left over from a turn already done
			continue
		}
		var err error
		for err == nil && c.err == nil && (len(c.head) > 0 || len(c.pending) > 0) {
			var out []byte
			if len(c.head) > 0 {
				out, c.head = c.head, nil
			} else {
				out = c.takePendingLocked()
			}
			c.mu.Unlock()
			err = c.writeAll(out)
			c.mu.Lock()
			c.keepSpare(out)
		}
		c.writerTurn, c.flushing = false, false
		c.room.Broadcast()
		c.mu.Unlock()
		if err != nil {
			c.Close(err)
		}
	}
}

// WriteStalled implements transport.Staller: how long the connection has
// had bytes to write without the socket taking any (zero when it has
// nothing waiting, or is writing).
func (c *Conn) WriteStalled(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since.IsZero() {
		return 0
	}
	if c.try != nil {
		if n := c.try.Written(); n != c.seen {
			c.seen, c.since = n, now // a raw write in progress moved on
		}
	}
	return max(now.Sub(c.since), 0)
}

// yieldEvery is how many frames a receive loop handles in a row, without
// its read buffer running dry, before it lets other goroutines run. A
// burst of answers (64 calls in flight) stays under it: yielding inside
// such bursts cost a third of their throughput.
const yieldEvery = 128

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
			// peer that does not read cannot hold Close. The deadline
			// ends a write stuck on the socket where the conn has
			// deadlines; the timer ends the wait where it has none.
			c.nc.SetWriteDeadline(time.Now().Add(closeFlush))
			t := time.AfterFunc(closeFlush, func() {
				c.mu.Lock()
				c.flushEnd = true
				c.room.Broadcast()
				c.mu.Unlock()
			})
			for c.flushing && !c.flushEnd {
				c.room.Wait()
			}
			t.Stop()
		}
		if c.err == nil {
			c.err = reason
		}
		c.head, c.pending, c.stamps = nil, nil, nil
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
//
// With CallerReads, Serve gives its read turn up when it has delivered a
// response, nothing more is buffered, no other response is awaited
// (transport.Busy), and the connection has carried no request for
// callerQuiet: the next caller then reads its own response (Lead), with
// no hand-off between goroutines. Serve takes the turn back when a caller
// leaves with others waiting, bytes buffered or a frame that is not a
// response; otherwise within two lingerTicks of the last caller's turn.
func (c *Conn) Serve() {
	limit := c.opts.MaxFrame
	if c.limit > 0 {
		limit = c.limit
	}
	br := bufio.NewReaderSize(stampedReader{c}, c.opts.ReadBuffer)
	c.br = br
	c.fr = wire.NewFrameReader(br, limit)
	if p, ok := c.h.(transport.ChunkPlacer); ok {
		c.fr.SetPlacer(p.PlaceChunk, stampedReader{c})
	}
	var reason error
	busy := 0 // frames read in a row without the buffer running dry
	vh, _ := c.h.(transport.ViewHandler)
	for {
		f, view, err := c.fr.ReadFrameView()
		if err != nil {
			reason = err
			break
		}
		if br.Buffered() == 0 {
			busy = 0 // the next read waits for the peer
		} else if busy++; busy == yieldEvery {
			// A peer that always has frames for us would otherwise keep
			// this thread for the scheduler's whole time slice (10 ms),
			// and the other connections' receive loops wait behind it.
			busy = 0
			runtime.Gosched()
		}
		if busy > 0 && !c.crowded.Load() {
			c.crowded.Store(true)
		}
		t := wire.FrameType(f)
		if err := c.handle(vh, f, view); err != nil {
			reason = err
			break
		}
		if c.relieved.Load() {
			if reason = c.awaitRelief(); reason != nil {
				break
			}
			continue
		}
		if c.busy == nil {
			continue
		}
		if t == wire.TypeRequest {
			c.reqs++
		} else if t == wire.TypeResponse && br.Buffered() == 0 && c.quiet() {
			if reason = c.stepAside(); reason != nil {
				break
			}
		}
	}
	c.end(reason)
	c.reliefWG.Wait()
}

// handle hands frame f to the Handler: as the view it is, when it is one
// (of the read buffer, valid until the next read) and the Handler takes
// views of its type; else as a frame of its own.
func (c *Conn) handle(vh transport.ViewHandler, f []byte, view bool) error {
	if view {
		if vh != nil {
			if handled, err := vh.HandleFrameView(f); handled || err != nil {
				return err
			}
		}
		f = append([]byte(nil), f...)
	}
	return c.h.HandleFrame(f)
}

// end closes the connection with reason and calls the Handler's Closed,
// once: from Serve when its loop stops, or from a relief reader that
// found the connection broken while Serve's goroutine is still busy.
func (c *Conn) end(reason error) {
	c.endOnce.Do(func() {
		c.Close(reason)
		c.writerWG.Wait()
		// Report the first reason: a Close by our side wins over the read
		// error that it caused.
		reason = c.closeErr()
		if errors.Is(reason, io.EOF) {
			reason = io.EOF
		}
		c.h.Closed(reason)
	})
}
