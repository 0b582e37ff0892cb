package velo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
)

// call is one request of ours awaiting its response.
type call struct {
	ch chan result // capacity 1: the single delivery never blocks
	// abandon: a routed idempotent call, failed at once (unknown
	// outcome, so retried elsewhere) when its instance is ejected for
	// silence, instead of waiting for the keepalive or its deadline.
	abandon bool
}

type result struct {
	status  wire.Status
	msg     string
	payload []byte
	err     error // a local failure (connection lost, shutdown)
}

// Arrived implements transport.Awaited: the call's result was delivered.
func (c *call) Arrived() bool { return len(c.ch) > 0 }

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan result, 1)} }}

// bufPool holds encoding buffers. Buffers that grew past maxPooledBuf are
// left to the garbage collector so that one large payload does not pin
// memory.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledBuf = 64 << 10

func putBuf(bp *[]byte, b []byte) {
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		bufPool.Put(bp)
	}
}

// write encodes req into a pooled buffer and hands it to the connection.
// A one-way request (queue) is queued for the connection's writer where
// the transport can (a copy, no system call, batched with the next
// messages); anything else is written at once. For requests that expect an
// answer the caller registers the call first.
//
// A write that waits for room ends with ctx: the frame is then withdrawn
// and the error is ctx's (see isCtxErr).
func (s *session) write(ctx context.Context, req *wire.Request, queue bool) error {
	if len(req.Payload) > ChunkSize/2 {
		// A large request goes in chunks from its payload, not from a
		// copy of it in one frame.
		head := *req
		head.Payload = nil
		h := wire.AppendRequest(nil, &head)
		if large, err := s.writeLarge(ctx, h, req.Payload); large {
			if err == nil {
				s.sent(len(h) + len(req.Payload))
			}
			return err
		}
	}
	q, ok := s.conn.(transport.Queuer)
	if ok && queue && wire.RequestLen(req) <= maxQueueBuf && s.queueMu.TryLock() {
		b := wire.AppendRequest(s.queueBuf[:0], req)
		err := s.queue(ctx, q, b)
		s.queueBuf = b[:0]
		s.queueMu.Unlock()
		return err
	}
	bp := bufPool.Get().(*[]byte)
	b := wire.AppendRequest((*bp)[:0], req)
	var err error
	if ok && queue {
		err = s.queue(ctx, q, b)
	} else if err = s.writeFrame(ctx, b); err == nil {
		s.sent(len(b))
	}
	putBuf(bp, b)
	return err
}

// maxQueueBuf is the largest one-way request frame encoded into the
// session's own buffer (session.queueBuf), which it keeps: larger ones take
// a buffer from bufPool.
const maxQueueBuf = 1 << 10

// queue hands the one-way request frame b to q, or writes it at once if
// it is too large to be copied into the connection's buffer.
func (s *session) queue(ctx context.Context, q transport.Queuer, b []byte) error {
	var err error
	if len(b) <= ChunkSize {
		err = q.QueueFrame(ctx, b)
	} else {
		err = s.writeFrame(ctx, b)
	}
	if err == nil {
		s.sent(len(b))
	}
	return err
}

// isCtxErr reports whether a write failed because its ctx ended (or its
// deadline passed before the frame left), not because the connection
// broke.
func isCtxErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// writeError is the caller's error for a failed write of a request.
//
// A write that ended with its ctx withdrew the frame: the request was not
// delivered. Any other failure may have come after part of the frame, or
// all of it, left: its outcome is unknown.
func (s *session) writeError(ctx context.Context, handler string, err error) error {
	if isCtxErr(err) {
		return undelivered(ctxErrorOr(ctx, handler), handler)
	}
	return withOutcome(s.lostError(handler, err), handler, outcomeUnknown)
}

// roundTrip sends a request and, for AMSync and Unary, waits for the
// response, the caller's ctx, or the end of the session.
func (s *session) roundTrip(ctx context.Context, req *wire.Request) ([]byte, error) {
	return s.exchange(ctx, req, false)
}

// exchange is roundTrip; an abandonable call may also end when its
// instance is ejected (see abandonSilent).
func (s *session) exchange(ctx context.Context, req *wire.Request, abandonable bool) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(dl)
		if req.Timeout <= 0 {
			return nil, undelivered(ctxErrorOr(ctx, req.Handler), req.Handler)
		}
	}
	if n := wire.RequestLen(req) - wire.PrefixLen; n > s.payloadLimit() {
		return nil, newError(CodePayloadTooLarge, req.Handler, nil,
			"request frame of %d bytes; %s accepts at most %d", n, s.peerName(), s.payloadLimit())
	}
	if err := wire.CheckRequest(req, s.m.limits); err != nil {
		return nil, newError(CodeBadRequest, req.Handler, err, "%v", err)
	}
	if !req.Kind.WantsResponse() {
		if err := s.write(ctx, req, true); err != nil {
			return nil, s.writeError(ctx, req.Handler, err)
		}
		return nil, nil
	}

	if err := s.admit(ctx, req.Handler); err != nil {
		return nil, undelivered(err, req.Handler)
	}
	defer func() { <-s.calls }()

	c := callPool.Get().(*call)
	c.abandon = abandonable
	id := s.nextID.Add(1)
	req.ID = id
	s.mu.Lock()
	if s.closed {
		err := s.err
		s.mu.Unlock()
		callPool.Put(c)
		return nil, undelivered(s.lostError(req.Handler, err), req.Handler)
	}
	s.pending[id] = c
	s.mu.Unlock()

	if err := s.write(ctx, req, false); err != nil {
		if s.forget(id) {
			callPool.Put(c)
			return nil, s.writeError(ctx, req.Handler, err)
		}
		// The session's end already answered the call: take that answer.
		return s.collect(c, req.Handler)
	}

	if s.leader != nil && s.ready() {
		// Read the answer ourselves if nobody reads the connection: it
		// then wakes this goroutine, with no hand-off from another.
		s.leader.Lead(ctx, c)
	}
	done := ctx.Done()
	if done == nil { // a ctx that never ends: a plain receive is cheaper
		r := <-c.ch
		callPool.Put(c)
		return r.payload, r.errorFor(req.Handler)
	}
	select {
	case r := <-c.ch:
		callPool.Put(c)
		return r.payload, r.errorFor(req.Handler)
	case <-done:
		if !s.forget(id) {
			return s.collect(c, req.Handler) // the answer won the race
		}
		callPool.Put(c)
		if !s.ready() {
			// Our _hello, the only request sent before the handshake
			// completes, got no answer within HandshakeTimeout: the peer is
			// unreachable. The caller's own deadline has not passed, so
			// this is no ErrDeadlineExceeded.
			return nil, newError(CodePeerLost, req.Handler, nil, "no answer to the handshake from %s", s.peerName())
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			// A deadline needs no message: the handler's ctx carries
			// the same deadline and ends on its own.
			s.sendCancel(ctx, id)
		}
		return nil, ctxError(ctx, req.Handler)
	}
}

// admit takes a token for one more call in flight on this session, waiting
// for one if MaxCallsInFlight are out, unless the options say to refuse.
func (s *session) admit(ctx context.Context, handler string) error {
	select {
	case s.calls <- struct{}{}:
		return nil
	default:
	}
	if s.m.opts.RejectCallsOverLimit {
		return newError(CodeBusy, handler, nil, "%d calls already in flight to %s", cap(s.calls), s.peerName())
	}
	select {
	case s.calls <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctxError(ctx, handler)
	case <-s.done:
		return s.lostError(handler, s.reason())
	}
}

func (s *session) reason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *session) collect(c *call, handler string) ([]byte, error) {
	r := <-c.ch
	callPool.Put(c)
	return r.payload, r.errorFor(handler)
}

func (r *result) errorFor(handler string) error {
	if r.err != nil {
		var ve *Error
		if errors.As(r.err, &ve) && ve.Handler == "" {
			e := *ve
			e.Handler = handler
			return &e
		}
		return r.err
	}
	return fromStatus(r.status, r.msg, handler)
}

// abandonSilent fails the abandonable calls waiting on s with err, and
// returns how many there were.
func (s *session) abandonSilent(err error) int {
	s.mu.Lock()
	var out []*call
	for id, c := range s.pending {
		if c.abandon {
			delete(s.pending, id)
			out = append(out, c)
		}
	}
	s.mu.Unlock()
	for _, c := range out {
		c.ch <- result{err: err}
	}
	if len(out) > 0 && s.leader != nil {
		s.leader.Unblock() // one of them may be reading the connection
	}
	return len(out)
}

// forget removes a pending call and reports whether it was still there, in
// which case nobody else will answer it.
func (s *session) forget(id uint64) bool {
	s.mu.Lock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	return ok
}

// sendCancel tells the peer that we stopped waiting for request id, so its
// handler's ctx is cancelled. Best effort: done is the caller's ctx, which
// has ended, so the cancel is dropped rather than waited for when the
// connection has no room; a failure means the connection is gone, which
// cancels the handler anyway.
func (s *session) sendCancel(done context.Context, id uint64) {
	var a [32]byte
	s.conn.WriteFrame(done, wire.AppendCancel(a[:0], id))
}

// lostError describes a failure to use the session.
func (s *session) lostError(handler string, cause error) error {
	var ve *Error
	if errors.As(cause, &ve) {
		return &Error{Code: ve.Code, Handler: handler, Message: ve.Message, Remote: ve.Remote, cause: cause}
	}
	return newError(CodePeerLost, handler, cause, "connection to %s lost: %v", s.peerName(), cause)
}

func (s *session) handleResponse(body, assembled []byte) error {
	r, err := wire.ParseResponse(body)
	if err != nil {
		return err
	}
	if s.dialed && !s.ready() {
		// The answer to our _hello, the only request sent before it.
		if r.Status != wire.StatusOK {
			return fromStatus(r.Status, r.Error, system.Hello)
		}
		h, err := system.DecodeHello(r.Payload)
		if err != nil {
			return fmt.Errorf("velo: handshake: %w", err)
		}
		if err := s.completeHello(&h); err != nil {
			return err
		}
	}
	s.mu.Lock()
	c := s.pending[r.ID]
	delete(s.pending, r.ID)
	s.mu.Unlock()
	if c == nil {
		// The caller stopped waiting (its ctx ended) before the answer came.
		return nil
	}
	if assembled != nil {
		s.m.payloads.lend(assembled, r.Payload, false)
	}
	c.ch <- result{status: r.Status, msg: r.Error, payload: r.Payload}
	return nil
}
