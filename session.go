package velo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
)

// session is the messenger's side of one connection: the calls it has in
// flight there, the requests it is handling for the peer, and the
// handshake state. It is the connection's transport.Handler, so all frames
// of the connection arrive through HandleFrame on one goroutine.
type session struct {
	m      *Messenger
	conn   transport.Conn
	leader transport.Leader // conn, if a caller may read its own answer; else nil
	// reliever is conn, if a request's handler may run on its receive
	// goroutine (inline.go); inlineSince is the monoNow at which the one
	// running there began, 0 when none, and inlineEntry its handler.
	reliever    transport.Reliever
	stamper     transport.Stamper // conn, if it tells when a frame arrived
	inlineSince atomic.Int64
	inlineEntry atomic.Pointer[handlerEntry]
	tname       string
	dialed      bool // we opened the connection

	// peer is written once by the handshake, on the receive goroutine,
	// before helloDone is set; it is read only after.
	helloDone atomic.Bool
	peer      peer.Info
	identity  string       // what the transport authenticated of the peer ("" for nothing)
	peerMax   atomic.Int64 // largest frame the peer reads
	// peerPayload is the peer's MaxPayload: the largest request or
	// response it takes in chunks; 0 when it takes none.
	peerPayload atomic.Int64
	chunkSeq    atomic.Uint64 // numbers the large frames we send
	chunks      chunkState    // the receive path's: large frames being put together
	whole       bool          // the connection moves large frames whole (transport.WholeFrames)
	created     time.Time

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

	// queueMu guards queueBuf, the buffer that one one-way request at a
	// time is encoded into before it is queued (write): a sender that
	// finds it taken uses one from bufPool.
	queueMu  sync.Mutex
	queueBuf []byte

	stalled      atomic.Int32
	handling     atomic.Int32 // requests of the peer's in inflight
	finished     atomic.Uint64
	lastFinished uint64       // the keepalive goroutine's copy of finished
	lastSend     atomic.Int64 // UnixNano of the last ping sent
	nextID       atomic.Uint64
	// toldGen is the handlerGen of the handler list the peer was last
	// sent (hello or _handlers).
	toldGen atomic.Uint64
	// Frames and bytes received (HandleFrame) and sent (requests and
	// responses), for Stats.
	framesIn, framesOut, bytesIn, bytesOut atomic.Uint64
	// greeted: our hello went out and the peer's came in; for an
	// accepted connection, set only once our answer is written, so that
	// no request of ours precedes it.
	greeted atomic.Bool
	// ep is the peer's routing state, set once the handshake is done.
	ep atomic.Pointer[endpoint]

	// Used by the receive goroutine only: the decoding limits, and the
	// last handler found, which intern and handler try first.
	limits    wire.Limits
	lastTable *map[string]*handlerEntry
	lastEntry *handlerEntry

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
	// forgotten is closed once the messenger forgot the ended session
	// (sessionClosed): a caller that finds it ended waits for that, then
	// looks for another connection.
	forgotten chan struct{}
}

var (
	_ transport.Handler = (*session)(nil)
	_ transport.Busy    = (*session)(nil)
)

// readAt is when the frame being handled arrived (transport.Stamper), or
// now where the connection does not tell.
func (s *session) readAt() int64 {
	if s.stamper != nil {
		return s.stamper.ReadAt()
	}
	return monoNow()
}

// Waiting implements transport.Busy: a call of ours awaits its answer.
// It also answers true on an instance with more than inlineMaxSessions
// connections, so that their receive goroutines keep reading and callers
// never take turns (transport.Leader): a receive goroutine that stepped
// aside looks every millisecond whether to read again, which across
// thousands of connections costs more than the wake-ups it saves, as the
// inline watchdog does (inline.go).
func (s *session) Waiting() bool {
	if s.m.nsessions.Load() > inlineMaxSessions {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0
}

// Crowded implements transport.Busy: more than one call of ours, or
// request of the peer's, is in flight.
func (s *session) Crowded() bool {
	return len(s.calls)+int(s.handling.Load()) > 1
}

func newSession(m *Messenger, c transport.Conn, tname string, dialed bool) *session {
	s := &session{
		m:         m,
		conn:      c,
		tname:     tname,
		dialed:    dialed,
		pending:   make(map[uint64]*call),
		inflight:  make(map[uint64]*inbound),
		done:      make(chan struct{}),
		forgotten: make(chan struct{}),
		calls:     make(chan struct{}, m.opts.MaxCallsInFlight),
	}
	s.leader, _ = c.(transport.Leader)
	s.reliever, _ = c.(transport.Reliever)
	s.stamper, _ = c.(transport.Stamper)
	if w, ok := c.(transport.WholeFrames); ok {
		s.whole = w.WholeFrames()
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

// intern implements wire.Limits.Intern for requests read by this session:
// a known handler's name comes back as the registered string, so decoding
// it allocates nothing (a map index by string(name) does not allocate).
func (s *session) intern(name []byte) (string, bool) {
	t := s.m.handlers.Load()
	if e := s.lastEntry; e != nil && s.lastTable == t && e.name == string(name) {
		return e.name, true
	}
	if e := (*t)[string(name)]; e != nil {
		s.lastTable, s.lastEntry = t, e
		return e.name, true
	}
	return "", false
}

// handler returns the registered handler named name, or nil. A connection
// mostly calls one handler, or a few: the last one found answers first,
// and as intern returned its very string, the comparison is one of
// pointers.
func (s *session) handler(name string) *handlerEntry {
	t := s.m.handlers.Load()
	if e := s.lastEntry; e != nil && s.lastTable == t && e.name == name {
		return e
	}
	e := (*t)[name]
	if e != nil {
		s.lastTable, s.lastEntry = t, e
	}
	return e
}

// ended reports whether the connection ended (a select on done: the
// send path asks for every call).
func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// awaitForgotten waits until the messenger forgot the ended session, or
// ctx ends.
func (s *session) awaitForgotten(ctx context.Context, handler string) error {
	select {
	case <-s.forgotten:
		return nil
	case <-ctx.Done():
		return ctxError(ctx, handler)
	}
}

// sent counts a frame of n bytes written.
func (s *session) sent(n int) {
	s.framesOut.Add(1)
	s.bytesOut.Add(uint64(n))
}

// ready reports whether the handshake completed (an atomic load: the
// receive path asks for every frame).
func (s *session) ready() bool { return s.helloDone.Load() }

// maxFrame is the largest frame this session may send.
func (s *session) maxFrame() int { return int(s.peerMax.Load()) }

// peerName names the peer for messages, once the handshake told who it is.
func (s *session) peerName() string {
	if s.ready() {
		return s.peer.ID.Short()
	}
	return s.conn.RemoteAddr()
}

// HandleFrame implements transport.Handler. It runs on the connection's
// receive goroutine, or for an answer, on a caller's that reads the
// connection itself (transport.Leader): one at a time, in order.
func (s *session) HandleFrame(frame []byte) error {
	return s.handleFrame(frame, nil, false)
}

// HandleFrameView implements transport.ViewHandler: a request, once the
// handshake is done, is taken from the read buffer, and only its payload
// copied (handleRequest); any other frame is left to HandleFrame.
func (s *session) HandleFrameView(view []byte) (bool, error) {
	if wire.FrameType(view) != wire.TypeRequest || !s.ready() {
		return false, nil
	}
	return true, s.handleFrame(view, nil, true)
}

// handleFrame handles a frame; assembled is the buffer of a large one put
// back together from chunks (with all of its capacity), nil for any other:
// its payload may be handed back for reuse (payloads.go). A view is a
// request frame still in the read buffer (HandleFrameView).
func (s *session) handleFrame(frame, assembled []byte, view bool) error {
	s.framesIn.Add(1)
	s.bytesIn.Add(uint64(len(frame)))
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
		return s.handleResponse(body, assembled)
	case wire.TypeRequest:
		return s.handleRequest(body, assembled, view)
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
	case wire.TypeChunk:
		if !s.ready() {
			return errors.New("velo: handshake: a chunk before the hello")
		}
		return s.handleChunk(body)
	case wire.TypeGoAway:
		g, err := wire.ParseGoAway(body)
		if err != nil {
			return err
		}
		code := codeOf(g.Status)
		if g.Status == wire.StatusOK {
			code = CodePeerLost
		}
		return &Error{Code: code, Message: "peer closed the connection: " + g.Message, Remote: true}
	}
	return nil
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
	close(s.forgotten)

	// The requests of these calls were written: whether their handlers
	// ran is not known.
	lost := withOutcome(s.lostError("", err), "", outcomeUnknown)
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
