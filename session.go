package velo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
)

// session is the messenger's side of one connection: the calls it has in
// flight there, the requests it is handling for the peer, and the
// handshake state. It is the connection's transport.Handler, so all frames
// of the connection arrive through HandleFrame on one goroutine.
type session struct {
	m      *Messenger
	conn   transport.Conn
	tname  string
	dialed bool // we opened the connection

	// peer and peerHandlers are written once by the handshake, on the
	// receive goroutine, before hello is closed; they are read only after.
	hello        chan struct{}
	helloDone    atomic.Bool // set just before hello is closed
	peer         peer.Info
	peerHandlers []string
	peerMax      atomic.Int64 // largest frame the peer reads
	created      time.Time

	calls chan struct{} // a token per call of ours in flight: MaxCallsInFlight

	// heard is set by each frame received but pings, and cleared by the
	// keepalive check, which then moves lastRecv to its own clock reading:
	// the receive path pays an atomic load per frame, not a clock read.
	heard    atomic.Bool
	lastRecv atomic.Int64 // UnixNano of the keepalive check that last found heard set

	// stalled counts the receive path's waits for room in a handler's
	// mailbox (actor.Config.Wait), and finished the requests done (an
	// answer written, or a one-way message handled):
	// while the receive path waits and handlers finish requests, the
	// peer's frames are unread rather than missing (see Messenger.check).
	// closing is set once keepalive decided to close the session; the
	// close runs on a goroutine of its own (it may wait for a stuck write)
	// and later checks skip the session.
	closing atomic.Bool

	stalled      atomic.Int32
	finished     atomic.Uint64
	lastFinished uint64       // the keepalive goroutine's copy of finished
	lastSend     atomic.Int64 // UnixNano of the last ping sent
	nextID       atomic.Uint64

	// Used by the receive goroutine only: the decoding limits, whose
	// Intern resolves handler names through the last handler found (a
	// connection mostly calls one handler, or a few), and found, the
	// handler that Intern resolved for the request being decoded.
	limits    wire.Limits
	lastTable *map[string]*handlerEntry
	lastEntry *handlerEntry
	found     *handlerEntry

	// errTokens and errAt are the receive goroutine's budget of error
	// answers (see throttleErrors).
	errTokens float64
	errAt     time.Time

	mu       sync.Mutex
	pending  map[uint64]*call    // guarded by mu: our calls awaiting a response
	inflight map[uint64]*inbound // guarded by mu: the peer's requests we are handling
	closed   bool                // guarded by mu
	err      error               // guarded by mu: why the session ended
	done     chan struct{}       // closed when the session ended
}

var _ transport.Handler = (*session)(nil)

func newSession(m *Messenger, c transport.Conn, tname string, dialed bool) *session {
	s := &session{
		m:        m,
		conn:     c,
		tname:    tname,
		dialed:   dialed,
		hello:    make(chan struct{}),
		pending:  make(map[uint64]*call),
		inflight: make(map[uint64]*inbound),
		done:     make(chan struct{}),
		calls:    make(chan struct{}, m.opts.MaxCallsInFlight),
	}
	s.limits = m.limits
	s.limits.Intern = s.intern
	if rl, ok := c.(transport.ReadLimiter); ok {
		// Until the handshake, the peer may send only a hello.
		rl.SetReadLimit(wire.MaxHelloFrame)
	}
	s.created = time.Now()
	s.peerMax.Store(wire.DefaultMaxFrame) // until the peer says otherwise
	now := s.created.UnixNano()
	s.lastRecv.Store(now)
	s.lastSend.Store(now)
	return s
}

// intern implements wire.Limits.Intern for requests read by this session.
func (s *session) intern(name []byte) (string, bool) {
	t := s.m.handlers.Load()
	if e := s.lastEntry; e != nil && s.lastTable == t && e.name == string(name) {
		s.found = e
		return e.name, true
	}
	e := (*t)[string(name)]
	s.found = e
	if e == nil {
		return "", false
	}
	s.lastTable, s.lastEntry = t, e
	return e.name, true
}

// ready reports whether the handshake completed (an atomic load: the
// receive path asks for every frame).
func (s *session) ready() bool { return s.helloDone.Load() }

// call is one request of ours awaiting its response.
type call struct {
	ch chan result // capacity 1: the single delivery never blocks
}

type result struct {
	status  wire.Status
	msg     string
	payload []byte
	err     error // a local failure (connection lost, shutdown)
}

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

// maxFrame is the largest frame this session may send.
func (s *session) maxFrame() int { return int(s.peerMax.Load()) }

// peerName names the peer for messages, once the handshake told who it is.
func (s *session) peerName() string {
	if s.ready() {
		return s.peer.ID.Short()
	}
	return s.conn.RemoteAddr()
}

// completeHello records what the peer said of itself in its Hello. It runs
// on the receive goroutine, so that frames after the handshake find the
// session ready.
func (s *session) completeHello(h *system.HelloMsg) error {
	if h.Info.ID.IsZero() {
		return fmt.Errorf("velo: handshake: peer sent a zero instance id")
	}
	s.peer = h.Info
	s.peerHandlers = h.Handlers
	if rl, ok := s.conn.(transport.ReadLimiter); ok {
		rl.SetReadLimit(s.m.maxFrame())
	}
	if h.MaxFrame > 0 {
		s.peerMax.Store(int64(h.MaxFrame))
	}
	s.helloDone.Store(true)
	close(s.hello)
	s.m.peerUp(s)
	return nil
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
	bp := bufPool.Get().(*[]byte)
	b := wire.AppendRequest((*bp)[:0], req)
	var err error
	if q, ok := s.conn.(transport.Queuer); ok && queue {
		err = q.QueueFrame(ctx, b)
	} else {
		err = s.conn.WriteFrame(ctx, b)
	}
	putBuf(bp, b)
	return err
}

// isCtxErr reports whether a write failed because its ctx ended (or its
// deadline passed before the frame left), not because the connection
// broke.
func isCtxErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// writeError is the caller's error for a failed write of a request.
func (s *session) writeError(ctx context.Context, handler string, err error) error {
	if isCtxErr(err) {
		return ctxErrorOr(ctx, handler)
	}
	return s.lostError(handler, err)
}

// roundTrip sends a request and, for AMSync and Unary, waits for the
// response, the caller's ctx, or the end of the session.
func (s *session) roundTrip(ctx context.Context, req *wire.Request) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(dl)
		if req.Timeout <= 0 {
			return nil, ctxErrorOr(ctx, req.Handler)
		}
	}
	if n := wire.RequestLen(req) - wire.PrefixLen; n > s.maxFrame() {
		return nil, newError(CodePayloadTooLarge, req.Handler, nil,
			"request frame of %d bytes; %s accepts at most %d", n, s.peerName(), s.maxFrame())
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
		return nil, err
	}
	defer func() { <-s.calls }()

	c := callPool.Get().(*call)
	id := s.nextID.Add(1)
	req.ID = id
	s.mu.Lock()
	if s.closed {
		err := s.err
		s.mu.Unlock()
		callPool.Put(c)
		return nil, s.lostError(req.Handler, err)
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

// HandleFrame implements transport.Handler. It runs on the connection's
// receive goroutine.
func (s *session) HandleFrame(frame []byte) error {
	t, body, err := wire.ParseHeader(frame)
	if err != nil {
		return err
	}
	if t != wire.TypePing {
		// A ping shows that the peer writes to us, not that it reads what
		// we write: counting it would hide a connection cut in our
		// direction from our keepalive whenever the peer pings more often
		// than our KeepaliveTimeout. Our own pings are answered by pongs.
		if !s.heard.Load() {
			s.heard.Store(true)
		}
	}
	switch t {
	case wire.TypeResponse:
		return s.handleResponse(body)
	case wire.TypeRequest:
		return s.handleRequest(body)
	case wire.TypeCancel:
		id, err := wire.ParseCancel(body)
		if err != nil {
			return err
		}
		s.mu.Lock()
		in := s.inflight[id]
		s.mu.Unlock()
		if in != nil {
			in.cancel()
		}
	case wire.TypePing:
		data, err := wire.ParsePing(body)
		if err != nil {
			return err
		}
		var a [32]byte
		// A peer that pings but does not read holds this receive path
		// here once the send buffer is full, which stops its flood;
		// keepalive closes the connection when our writes stall.
		return s.conn.WriteFrame(context.Background(), wire.AppendPing(a[:0], true, data))
	case wire.TypePong:
		if _, err := wire.ParsePing(body); err != nil {
			return err
		}
	case wire.TypeGoAway:
		g, err := wire.ParseGoAway(body)
		if err != nil {
			return err
		}
		code := Code(g.Status)
		if g.Status == wire.StatusOK {
			code = CodePeerLost
		}
		return &Error{Code: code, Message: "peer closed the connection: " + g.Message, Remote: true}
	}
	return nil
}

func (s *session) handleResponse(body []byte) error {
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
	c.ch <- result{status: r.Status, msg: r.Error, payload: r.Payload}
	return nil
}

func (s *session) handleRequest(body []byte) error {
	s.found = nil
	req, err := wire.ParseRequest(body, s.limits)
	if err != nil {
		return err
	}
	if !s.ready() {
		if s.dialed || req.Handler != system.Hello || req.Kind != wire.KindUnary {
			return fmt.Errorf("velo: handshake: first request is %q, want %s", req.Handler, system.Hello)
		}
		return s.m.acceptHello(s, &req)
	}
	if s.m.deliverEvent(s, &req) {
		return nil
	}
	in := newInbound(s, &req)
	if s.m.draining() {
		s.finish(in, nil, newError(CodeShuttingDown, req.Handler, nil, "instance %s is shutting down", s.m.id.Short()))
		return nil
	}
	e := s.found // looked up while decoding the name
	if e == nil {
		s.throttleErrors()
		s.finish(in, nil, newError(CodeHandlerNotFound, req.Handler, nil, "no handler %q on instance %s", req.Handler, s.m.id.Short()))
		return nil
	}

	// The handler's ctx carries the caller's deadline and ends when the
	// caller cancels (a cancel frame), when the connection ends, or when the
	// messenger stops its handlers.
	// An AMSend without a deadline needs no ctx of its own: nobody waits
	// for it, so neither a cancel frame nor the connection's end concerns
	// it, and the messenger's stop still reaches it through handlerCtx.
	ctx := s.m.handlerCtx
	if req.Timeout > 0 {
		ctx, in.cancel = context.WithTimeout(ctx, req.Timeout)
	} else if req.Kind.WantsResponse() {
		ctx, in.cancel = context.WithCancel(ctx)
	}
	if req.Kind.WantsResponse() {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			in.cancel()
			return nil
		}
		s.inflight[req.ID] = in
		s.mu.Unlock()
	}
	if err := e.actor.Tell(ctx, s.peer.ID, in); err != nil {
		s.finish(in, nil, s.m.tellError(req.Handler, ctx, err))
	}
	return nil
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
// returned, panicked, was refused, or was dropped at shutdown.
func (s *session) finish(in *inbound, payload []byte, herr error) {
	if in.done.Swap(true) {
		return
	}
	if in.cancel != nil {
		if in.kind.WantsResponse() {
			s.mu.Lock()
			delete(s.inflight, in.id)
			s.mu.Unlock()
		}
		in.cancel()
	}
	if !in.kind.WantsResponse() {
		s.finished.Add(1)
		if herr != nil {
			s.m.log.Debug("velo: am-send handler failed", "handler", in.c.Handler, "sender", s.peerName(), "err", herr)
		}
		return
	}
	if herr != nil && s.m.handlerCtx.Err() != nil && errors.Is(herr, context.Canceled) {
		// Shutdown ran out of time and cancelled the handler.
		herr = newError(CodeShuttingDown, in.c.Handler, herr, "instance %s is shutting down", s.m.id.Short())
	}
	resp := wire.Response{ID: in.id}
	if herr != nil {
		resp.Status, resp.Error = toStatus(herr)
	} else if in.kind == wire.KindUnary {
		resp.Payload = payload
	}
	s.fit(&resp)
	bp := bufPool.Get().(*[]byte)
	b := wire.AppendResponse((*bp)[:0], &resp)
	// A response waits for room as long as the connection lives (keepalive
	// closes one whose writes stall), or until Shutdown stops the
	// handlers.
	if err := s.conn.WriteFrame(s.m.handlerCtx, b); err != nil {
		s.m.log.Debug("velo: response not sent", "handler", in.c.Handler, "err", err)
	} else {
		s.finished.Add(1)
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
	limit := s.maxFrame()
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

// Closed implements transport.Handler: the connection ended. Every call in
// flight on it fails at once, and the handlers running for the peer see
// their ctx cancelled.
func (s *session) Closed(reason error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.err == nil {
		s.err = reason
	}
	err := s.err
	pending := s.pending
	inflight := s.inflight
	s.pending = nil
	s.inflight = nil
	s.mu.Unlock()
	close(s.done)
	// Forget the session before failing its calls: a caller that sends
	// again as soon as its call failed must dial anew, not find this one.
	s.m.sessionClosed(s, err)

	lost := s.lostError("", err)
	for _, c := range pending {
		c.ch <- result{err: lost}
	}
	for _, in := range inflight {
		in.cancel()
	}
}

// close ends the session with reason; Closed follows from the transport.
func (s *session) close(reason error) {
	s.setReason(reason)
	s.conn.Close(reason)
}

// setReason records why the session ends, unless a reason is known.
func (s *session) setReason(reason error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = reason
	}
	s.mu.Unlock()
}

// sendGoAway tells the peer that this instance is shutting down.
// It waits for room in the connection for ctx at most.
func (s *session) sendGoAway(ctx context.Context) {
	var a [64]byte
	s.conn.WriteFrame(ctx, wire.AppendGoAway(a[:0], wire.GoAway{Status: wire.StatusShuttingDown, Message: "instance shutting down"}))
}
