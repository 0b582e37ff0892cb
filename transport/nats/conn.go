package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/credit"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// conn is one virtual connection over NATS. Frames received are queued by
// the subscription's goroutine and handed to the Handler by the
// connection's own goroutine (run), so that a slow handler holds up its
// own connection only.
type conn struct {
	t       *Transport
	localID uint64
	remote  string // the peer's subject
	window  int    // bytes we let the peer have in flight (our receive window)
	// maxFrame is the transport's limit when the connection opened; it
	// cannot change under it, since a NATS reconnect (perhaps to a server
	// with another max_payload) closes every connection.
	maxFrame int
	// accepted is set when the peer dialed; written before the
	// connection is shared.
	accepted bool

	// remoteID and h are set before the connection is used: by Dial
	// before it returns, by accept before run starts.
	remoteID uint64
	h        transport.Handler

	wmu  sync.Mutex // serialises publishing, so that seq order is publish order
	seq  uint64     // guarded by wmu: next outgoing sequence number
	wbuf []byte     // guarded by wmu: the message being published

	mu       sync.Mutex
	arrived  sync.Cond     // a frame was queued, the peer closed, or the connection closed
	ready    bool          // guarded by mu: remoteID is known
	win      credit.Window // guarded by mu: bytes we may still send
	queue    [][]byte      // guarded by mu: frames received, not handled yet
	queued   int           // guarded by mu: bytes in queue
	nextSeq  uint64        // guarded by mu: sequence number of the next data message due
	eof      error         // guarded by mu: the peer closed; handle what is queued, then close
	closed   bool          // guarded by mu
	err      error         // guarded by mu: why the connection closed
	consumed int           // used by run only: bytes handled since the last window message
}

var (
	_ transport.Conn    = (*conn)(nil)
	_ transport.Staller = (*conn)(nil)
)

func newConn(t *Transport, localID uint64, remote string, window, maxFrame int) *conn {
	c := &conn{t: t, localID: localID, remote: remote, window: window, maxFrame: maxFrame}
	c.win.Init(&c.mu)
	c.arrived.L = &c.mu
	return c
}

// WriteFrame implements transport.Conn. It waits while the peer has no
// room for more, and publishes the frame without its length prefix.
func (c *conn) WriteFrame(ctx context.Context, b []byte) error {
	if len(b) < wire.PrefixLen {
		return fmt.Errorf("nats: frame of %d bytes has no length prefix", len(b))
	}
	frame := b[wire.PrefixLen:]
	if len(frame) > c.maxFrame {
		err := fmt.Errorf("nats: frame of %d bytes exceeds the %d that a NATS message holds", len(frame), c.maxFrame)
		c.Close(err)
		return err
	}
	c.mu.Lock()
	// A sender may overdraw its credit by one frame, so that a frame
	// larger than what is left never waits forever; the receiver allows
	// for it.
	if err := c.waitCreditLocked(ctx); err != nil {
		c.mu.Unlock()
		return err
	}
	c.win.Take(len(frame))
	c.mu.Unlock()

	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok && wire.IsTimedRequest(b) {
		// The timeout is what the caller has left now, as the frame
		// leaves: not what it had when it began to wait for credit.
		left := time.Until(dl)
		if left <= 0 {
			c.wmu.Unlock()
			c.grant(uint32(len(frame))) // withdrawn: its credit goes back
			return context.DeadlineExceeded
		}
		wire.StampTimeout(b, left)
	}
	msg := append(appendDataHeader(c.wbuf[:0], c.remoteID, c.seq), frame...)
	c.seq++
	err := c.t.publish(c.remote, msg)
	if cap(msg) <= 64<<10 { // keep a small buffer, let a large one go
		c.wbuf = msg
	}
	c.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("nats: publish: %w", err)
		c.Close(err)
		return err
	}
	return nil
}

// waitCreditLocked waits until the peer has room (credit), the connection
// closes, or ctx ends. Called with mu held.
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

// Close implements transport.Conn. The peer is told, unless it closed
// first. Frames still queued are dropped.
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
	notify := c.ready && c.eof == nil
	c.queue, c.queued = nil, 0
	c.win.Wake()
	c.arrived.Broadcast()
	c.mu.Unlock()
	c.t.forget(c)
	if notify {
		var a [closeFixed + maxReasonLen]byte
		c.t.publish(c.remote, appendClose(a[:0], c.remoteID, reason.Error()))
	}
	return nil
}

// LocalAddr implements transport.Conn.
func (c *conn) LocalAddr() string { return c.t.Subject() }

// RemoteAddr implements transport.Conn.
func (c *conn) RemoteAddr() string { return c.remote }

// run hands queued frames to the handler until the connection closes,
// returns credit to the peer as frames are handled, and calls Closed once
// at the end.
func (c *conn) run() {
	defer c.t.wg.Done()
	for {
		c.mu.Lock()
		for !c.closed && len(c.queue) == 0 && c.eof == nil {
			c.arrived.Wait()
		}
		if c.closed {
			reason := c.err
			c.mu.Unlock()
			c.h.Closed(reason)
			return
		}
		if len(c.queue) == 0 { // the peer closed and everything it sent is handled
			eof := c.eof
			c.mu.Unlock()
			c.Close(eof)
			continue
		}
		f := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.queued -= len(f)
		c.mu.Unlock()

		if err := c.h.HandleFrame(f); err != nil {
			c.Close(err)
			continue
		}
		c.consumed += len(f)
		if c.consumed >= c.window/2 {
			var a [windowMsgLen]byte
			c.t.publish(c.remote, appendWindow(a[:0], c.remoteID, uint32(c.consumed)))
			c.consumed = 0
		}
	}
}

// deliver queues a data message; it runs on the subscription's goroutine.
// A gap in the sequence, a frame over the limit, or a peer that ignores
// its window closes the connection.
func (c *conn) deliver(seq uint64, frame []byte) {
	c.mu.Lock()
	if c.closed || c.eof != nil {
		c.mu.Unlock()
		return
	}
	var bad error
	switch {
	case seq != c.nextSeq:
		bad = fmt.Errorf("nats: message %d arrived when %d was due: NATS dropped messages", seq, c.nextSeq)
	case len(frame) < wire.HeaderLen-wire.PrefixLen:
		bad = fmt.Errorf("nats: frame of %d bytes is shorter than a frame header", len(frame))
	case len(frame) > c.maxFrame:
		bad = fmt.Errorf("nats: frame of %d bytes, limit %d", len(frame), c.maxFrame)
	case c.queued+len(frame) > c.window+c.maxFrame:
		bad = errors.New("nats: the peer sent beyond its window")
	}
	if bad != nil {
		c.mu.Unlock()
		c.t.log.Debug("nats: closing a connection on bad input", "remote", c.remote, "err", bad)
		c.Close(bad)
		return
	}
	c.nextSeq++
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.arrived.Signal()
	c.mu.Unlock()
}

// grant adds credit returned by the peer.
func (c *conn) grant(n uint32) {
	c.mu.Lock()
	c.win.Grant(int(n))
	c.mu.Unlock()
}

// peerClosed records that the peer closed the connection: what it sent
// before is still handled, then the connection closes.
func (c *conn) peerClosed(reason string) {
	c.mu.Lock()
	if !c.closed && c.eof == nil {
		c.eof = fmt.Errorf("nats: closed by the peer: %s", reason)
		c.arrived.Signal()
	}
	c.mu.Unlock()
}

// start makes the connection usable once its peer is known: it sets the
// handler and starts its goroutine. It fails after the transport closed.
func (c *conn) start(remoteID uint64, credit int, h transport.Handler) error {
	c.mu.Lock()
	c.remoteID = remoteID
	c.win.Set(credit)
	c.h = h
	c.ready = true
	c.mu.Unlock()
	return c.t.spawn(c)
}
