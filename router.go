package velo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
)

// handleRequest is the router: on the connection's receive goroutine,
// with no hand-off, it decodes a request, finds its handler and tells the
// handler's actor, which answers through finish. Requests of velo's own
// protocols (the handshake, events) are taken aside first.
func (s *session) handleRequest(body, assembled []byte, view bool) error {
	req, err := wire.ParseRequest(body, s.limits)
	if err != nil {
		return err
	}
	if view {
		// Of a frame still in the read buffer, only the payload is kept:
		// the handler name and headers are copies or interned already.
		req.Payload = bytes.Clone(req.Payload)
	}
	if !s.ready() {
		if s.dialed || req.Handler != system.Hello || req.Kind != wire.KindUnary {
			return fmt.Errorf("velo: handshake: first request is %q, want %s", req.Handler, system.Hello)
		}
		return s.m.acceptHello(s, &req)
	}
	if err := s.authorize(&req); err != nil {
		s.throttleErrors()
		s.finish(newInbound(s, &req), nil, nil, err)
		return nil
	}
	if req.Handler == system.HandlersChanged {
		s.m.peerHandlersChanged(s, &req)
		return nil
	}
	if s.m.deliverEvent(s, &req) || s.m.deliverStream(s, &req) {
		return nil
	}
	in := newInbound(s, &req)
	if s.m.draining() {
		s.finish(in, nil, nil, newError(CodeShuttingDown, req.Handler, nil, "instance %s is shutting down", s.m.id.Short()))
		return nil
	}
	e := s.handler(req.Handler)
	if e == nil {
		s.m.notFoundCount.Add(1)
		s.throttleErrors()
		s.finish(in, nil, nil, s.m.notFound(req.Handler))
		return nil
	}
	if assembled != nil {
		s.m.payloads.lend(assembled, req.Payload, e.reuse)
		if e.reuse {
			in.extra().reused = unsafe.SliceData(req.Payload)
		}
	}
	in.start = s.readAt()
	e.stats.requests.Add(1)

	// The handler's ctx carries the caller's deadline and ends when the
	// caller cancels (a cancel frame), when the connection ends, or when the
	// messenger stops its handlers.
	// An AMSend without a deadline needs no ctx of its own: nobody waits
	// for it, so neither a cancel frame nor the connection's end concerns
	// it, and the messenger's stop still reaches it through handlerCtx.
	ctx := s.m.handlerCtx
	if req.Timeout > 0 {
		ctx, in.more.cancel = context.WithTimeout(ctx, req.Timeout)
	} else if req.Kind.WantsResponse() {
		ctx, in.more.cancel = context.WithCancel(ctx)
	}
	if req.Kind.WantsResponse() {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			in.cancel()
			in.giveBack()
			return nil
		}
		s.inflight[req.ID] = in
		s.mu.Unlock()
		s.handling.Add(1)
	}
	// A large request (it came in chunks) runs on the actor: its answer is
	// likely large too, and writing it in chunks on the receive goroutine
	// would keep the connection's other frames unread meanwhile.
	if e.here && s.reliever != nil && len(req.Payload) <= ChunkSize && in.start >= e.heldUntil.Load() &&
		s.m.nsessions.Load() <= inlineMaxSessions && s.reliever.BeginInline() {
		err = s.runHere(ctx, e, in)
	} else {
		err = e.actor.Tell(ctx, s.peer.ID, in)
	}
	if err != nil {
		if e.gone.Load() { // unregistered since it was looked up
			err = s.m.notFound(req.Handler)
		} else {
			err = s.m.tellError(req.Handler, ctx, err)
		}
		s.finish(in, e.stats, nil, err)
		in.giveBack()
	}
	return nil
}

func (m *Messenger) notFound(handler string) error {
	return newError(CodeHandlerNotFound, handler, nil, "no handler %q on instance %s", handler, m.id.Short())
}

// Error answers to one peer are rate-limited: a connection may have
// errorRate a second answered at once, in bursts of up to errorBurst;
// past that its receive path pauses, so that a peer flooding requests
// that fail (an unknown handler) slows itself down instead of taking the
// CPU from other peers. Nothing is dropped: each request is still
// answered, later.
const (
	errorRate  = 5000
	errorBurst = 500
	// errorPause is the least a throttled receive path sleeps: the budget
	// refills by errorRate × errorPause meanwhile.
	errorPause = 5 * time.Millisecond
)

// throttleErrors takes one error answer from the session's budget,
// sleeping first if it is spent. It runs on the receive goroutine.
func (s *session) throttleErrors() {
	now := time.Now()
	if s.errAt.IsZero() {
		s.errTokens, s.errAt = errorBurst, now
	}
	s.errTokens = min(errorBurst, s.errTokens+now.Sub(s.errAt).Seconds()*errorRate)
	s.errAt = now
	if s.errTokens < 1 {
		time.Sleep(errorPause)
		s.errAt = time.Now()
		s.errTokens += errorPause.Seconds() * errorRate
	}
	s.errTokens--
}

// finish answers a request, once, whatever path it took: the handler
// returned, panicked, was refused, or was dropped at shutdown. st are
// the counters of the handler the request reached, nil if none.
func (s *session) finish(in *inbound, st *handlerStats, payload []byte, herr error) {
	if in.done.Swap(true) {
		return
	}
	if st != nil {
		st.done(time.Duration(monoNow()-in.start), herr)
	}
	if in.more != nil && in.more.cancel != nil {
		if in.kind.WantsResponse() {
			s.mu.Lock()
			if _, ok := s.inflight[in.more.id]; ok {
				delete(s.inflight, in.more.id)
				s.handling.Add(-1)
			}
			s.mu.Unlock()
		}
		in.more.cancel()
	}
	if !in.kind.WantsResponse() {
		s.finished.Add(1)
		if herr != nil {
			s.m.logOneWay(in.c.Handler, s.peerName(), herr)
		}
		return
	}
	if herr != nil && s.m.handlerCtx.Err() != nil && errors.Is(herr, context.Canceled) {
		// Shutdown ran out of time and cancelled the handler.
		herr = newError(CodeShuttingDown, in.c.Handler, herr, "instance %s is shutting down", s.m.id.Short())
	}
	resp := wire.Response{ID: in.more.id}
	if herr != nil {
		resp.Status, resp.Error = toStatus(herr)
	} else if in.kind == wire.KindUnary {
		resp.Payload = payload
	}
	s.fit(&resp)
	if len(resp.Payload) > ChunkSize/2 {
		// A large response goes in chunks from the handler's result, not
		// from a copy of it in one frame.
		head := resp
		head.Payload = nil
		h := wire.AppendResponse(nil, &head)
		if large, err := s.writeLarge(s.m.handlerCtx, h, resp.Payload); large {
			if err != nil {
				s.m.log.Debug("velo: response not sent", "handler", in.c.Handler, "err", err)
			} else {
				s.finished.Add(1)
				s.sent(len(h) + len(resp.Payload))
			}
			return
		}
	}
	bp := bufPool.Get().(*[]byte)
	b := wire.AppendResponse((*bp)[:0], &resp)
	// A response waits for room as long as the connection lives (keepalive
	// closes one whose writes stall), or until Shutdown stops the
	// handlers.
	if err := s.writeFrame(s.m.handlerCtx, b); err != nil {
		s.m.log.Debug("velo: response not sent", "handler", in.c.Handler, "err", err)
	} else {
		s.finished.Add(1)
		s.sent(len(b))
	}
	putBuf(bp, b)
}

// MaxErrorText is the longest error text velo sends in a response, in
// bytes: a longer one (a handler's error or panic message) is cut to this
// size, ending with a marker that gives the original length, so that one
// long message can never make a response that the peer refuses.
const MaxErrorText = 4096

// fit makes resp fit the peer's frame limit: an error text is cut to
// MaxErrorText (and further if the peer reads smaller frames), and a
// result too large for the peer is replaced by ErrPayloadTooLarge. Only
// this call fails; a frame over the limit would make the peer close the
// connection and fail every other call on it.
func (s *session) fit(resp *wire.Response) {
	limit := s.payloadLimit()
	if n := wire.ResponseLen(resp) - wire.PrefixLen; n > limit && len(resp.Payload) > 0 {
		resp.Payload = nil
		resp.Status = wire.StatusPayloadTooLarge
		resp.Error = fmt.Sprintf("response frame of %d bytes; %s accepts at most %d", n, s.peerName(), limit)
	}
	room := MaxErrorText
	if fixed := wire.ResponseLen(&wire.Response{}) - wire.PrefixLen; limit-fixed < room {
		room = max(limit-fixed, 0)
	}
	resp.Error = cutText(resp.Error, room)
}

// cutText returns msg if it has at most n bytes, else its beginning and a
// marker, n bytes in all (the cut falls on a UTF-8 boundary).
func cutText(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	marker := fmt.Sprintf("… [cut: %d bytes]", len(msg))
	if len(marker) >= n {
		return marker[:0]
	}
	keep := n - len(marker)
	for keep > 0 && !utf8.RuneStart(msg[keep]) {
		keep--
	}
	return msg[:keep] + marker
}

// monoNow reads the monotonic clock alone (transport.Mono). A request's
// duration is from the read that brought it (transport.Stamper, where the
// connection tells) to its end.
func monoNow() int64 { return transport.Mono() }

// inbound is one request being handled. Every request allocates one, so
// what a one-way message without deadline does not need is in more.
type inbound struct {
	s    *session
	kind wire.Kind
	done atomic.Bool // set by the first finish
	// c is what the handler is given, allocated with the request; it holds
	// the request's handler name, headers and payload.
	c Context
	// start is when the request was read (monoNow), for the duration
	// its handler's counters get.
	start int64
	// more is allocated with the request if it is answered or timed, and
	// otherwise once it is needed (extra): nil for a one-way message
	// without deadline whose handler succeeded.
	more *inboundMore
}

// inboundMore is the part of a request's record that some requests need.
type inboundMore struct {
	id     uint64
	cancel context.CancelFunc // ends the handler's ctx of its own; nil if it has none
	out    []byte             // the handler's result, answered by finish
	err    error
	// reused is the first byte of the payload as lent to a handler built
	// with ReusePayload (the handler may reassign c.Payload); giveBack
	// hands it back once the handler is done with it.
	reused *byte
}

// inboundWithMore is an inbound and its more, in one allocation.
type inboundWithMore struct {
	in   inbound
	more inboundMore
}

// extra returns in.more, allocating it first if need be. Only the
// goroutine that holds the request calls it: the receive path before the
// request is handed to its handler, the handler's goroutine after.
func (in *inbound) extra() *inboundMore {
	if in.more == nil {
		in.more = new(inboundMore)
	}
	return in.more
}

// cancel ends the handler's ctx, if it has one of its own.
func (in *inbound) cancel() {
	if in.more != nil && in.more.cancel != nil {
		in.more.cancel()
	}
}

// giveBack hands the payload of a ReusePayload handler back for reuse,
// once: after the handler returned and its answer was written, or when it
// will not run.
func (in *inbound) giveBack() {
	if in.more != nil && in.more.reused != nil {
		in.s.m.payloads.give(in.more.reused, true)
		in.more.reused = nil
	}
}

// newInbound records req, received on s, for its handler.
func newInbound(s *session, req *wire.Request) *inbound {
	var in *inbound
	if req.Kind.WantsResponse() || req.Timeout > 0 {
		r := &inboundWithMore{}
		r.more.id = req.ID
		in = &r.in
		in.more = &r.more
	} else {
		in = &inbound{}
	}
	in.s, in.kind = s, req.Kind
	in.c = Context{
		Msg: s.m, Sender: s.peer.ID, Identity: s.identity, Handler: req.Handler, Payload: req.Payload, Headers: req.Headers,
	}
	return in
}
