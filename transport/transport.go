// Package transport defines how velo moves frames between instances. A
// Transport dials and accepts connections; a Conn is an ordered, reliable
// pipe of whole frames (internal/wire) to one peer, used in both directions.
// Everything above a Conn (request matching, handshake, keepalive, dispatch)
// lives in the messenger, so every transport behaves the same.
package transport

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Conn is one connection to a peer.
//
// WriteFrame and Close may be called from any number of goroutines at once.
// Frames written by concurrent callers are never interleaved, and frames
// written by one goroutine arrive in the order written.
type Conn interface {
	// WriteFrame sends one complete frame, length prefix included. It may
	// return before the bytes are on the network (writes are coalesced,
	// and a frame may wait behind others). The connection does not keep b
	// after WriteFrame returns.
	//
	// When the peer does not read, WriteFrame waits for room
	// (backpressure) until the peer reads, the connection is closed, or
	// ctx ends: then it returns ctx's error and the frame is withdrawn,
	// never sent. A frame whose first bytes are already on the network is
	// always completed. A ctx that cannot end (context.Background) waits
	// as long as the connection lives.
	//
	// A request frame that carries a timeout (wire.IsTimedRequest) has it
	// rewritten, when it is handed to the network, to the time left until
	// ctx's deadline (wire.StampTimeout), so that the handler is not given
	// the time the frame waited here; one whose deadline passed before
	// that is withdrawn.
	//
	// Any other error means the connection is broken and every later
	// write fails.
	WriteFrame(ctx context.Context, b []byte) error
	// Close closes the connection with a reason; the Handler's Closed is
	// called once, with the first reason. Close is idempotent.
	Close(reason error) error
	// LocalAddr and RemoteAddr describe the endpoints, for logs.
	LocalAddr() string
	RemoteAddr() string
}

// Handler receives what arrives on one connection. The messenger
// implements it.
type Handler interface {
	// HandleFrame is called once per frame (length prefix removed), in
	// arrival order, by one goroutine at a time: the connection's receive
	// goroutine, or a caller in Leader.Lead (response frames only), each
	// call ordered after the one before it. The callee owns frame. A
	// returned error closes the connection with that reason.
	HandleFrame(frame []byte) error
	// Closed is called exactly once, after the receive goroutine stopped
	// delivering frames, with the reason the connection ended.
	Closed(reason error)
}

// ViewHandler is implemented by a Handler that can take a frame while it
// is still in the connection's read buffer, for one frame type or a few:
// such a frame is no copy of the buffer, valid only during the call.
// HandleFrameView reports false, having kept nothing of view, for a frame
// it does not take that way; the frame then goes to HandleFrame as a
// copy of its own. The same ordering rules hold as for HandleFrame.
type ViewHandler interface {
	HandleFrameView(view []byte) (handled bool, err error)
}

// Binder is called once for each new connection, before its first frame is
// read, and returns the Handler for that connection.
type Binder func(c Conn) Handler

// Transport dials and accepts connections of one kind.
//
// Listen is called once, before any Dial. Dial may be called concurrently.
// Close may be called at any time; it is idempotent.
type Transport interface {
	// Name is the key of this transport in peer.Info.Addresses ("tcp").
	Name() string
	// Listen starts accepting connections; bind gives each its Handler.
	// It returns the address that peers should dial.
	Listen(ctx context.Context, bind Binder) (addr string, err error)
	// Dial connects to addr; bind gives the connection its Handler.
	Dial(ctx context.Context, addr string, bind Binder) (Conn, error)
	// MaxFrame is the largest frame (length prefix excluded) that this
	// transport reads; larger ones are refused before allocation.
	MaxFrame() int
	// Close stops accepting, closes every connection the transport made or
	// accepted, and waits until its goroutines have returned.
	Close() error
}

// ErrClosed is returned by a Transport used after Close and by writes on a
// closed connection.
var ErrClosed = errors.New("velo: transport closed")

// Local is implemented by a transport that reaches only instances on the
// same host (transport/uds). The messenger tries such a transport before
// the others when Local reports the peer's address as on this host; the
// handshake still checks that the instance answering is the one dialed.
type Local interface {
	Local(addr string) bool
}

// Queuer is implemented by a Conn that can take a frame without writing it
// at once: QueueFrame returns once the frame is copied into the
// connection's buffer, and the connection writes it soon, batched with
// the frames queued meanwhile. The messenger uses it for AMSend, whose
// contract ends when the frame is handed to the transport. Frames queued
// and frames written with WriteFrame keep their order.
type Queuer interface {
	QueueFrame(ctx context.Context, b []byte) error
}

// Leader is implemented by a Conn that lets a goroutine waiting for a
// response read the connection itself, so that the response wakes that
// goroutine rather than a receive goroutine that must then hand it over
// (a thread hand-off per call).
//
// Lead takes the connection's read turn if nobody holds it, and then reads
// frames on the calling goroutine, handing each response frame to the
// Handler as the receive goroutine would, until w.Arrived reports true
// after a frame, ctx ends, or Unblock is called. Any other frame (a
// request, a ping) ends the turn: the receive goroutine handles it and
// reads on, so that a caller never runs a handler or waits on anything
// but the network. When the turn ends, the receive goroutine takes the
// connection back at once if bytes are buffered or the Handler
// (Busy) has others waiting; otherwise the next caller may lead, and
// the receive goroutine takes the connection back within a bound the
// implementation documents.
//
// Lead returns false, having read nothing, when another goroutine holds
// the turn: the response then arrives as it always does. It returns true
// once its turn is over; the response may or may not have arrived.
type Leader interface {
	Lead(ctx context.Context, w Awaited) bool
	// Unblock ends the turn of a goroutine in Lead, if any, as if its
	// ctx had ended: a response delivered to it by other means (the
	// messenger gave up on the call) must not wait for a frame.
	Unblock()
}

// Reliever is implemented by a Conn whose receive goroutine may do a
// request's work itself, inside HandleFrame, instead of handing it to
// another goroutine (a thread hand-off per request), as long as someone
// else reads the connection when that work takes long.
//
// BeginInline, called from HandleFrame, reports whether the work may run
// there: the caller is the receive goroutine proper and no frame is
// buffered behind this one. If it returns true, EndInline must follow on
// the same goroutine once the work is done. Relieve, called from any
// goroutine while the work runs, makes another goroutine read the
// connection (every frame, requests included) until the receive
// goroutine is free again; it does nothing at other times.
type Reliever interface {
	BeginInline() bool
	EndInline()
	Relieve()
}

// Stamper is implemented by a Conn that can tell when the frame being
// handled arrived: ReadAt, called from HandleFrame, is the Mono time of
// the read from the network that brought the frame's last bytes. Frames
// that came in one read share it, so the receive path reads the clock
// once per read rather than once per frame.
type Stamper interface {
	ReadAt() int64
}

// epoch is the origin of Mono.
var epoch = time.Now()

// Mono reads the monotonic clock alone, in nanoseconds since the process
// loaded this package: half the cost of time.Now, which reads the wall
// clock too.
func Mono() int64 { return int64(time.Since(epoch)) }

// Awaited is what a goroutine in Lead waits for.
type Awaited interface {
	// Arrived reports whether the response was delivered, by whichever
	// goroutine read it (or the connection's end).
	Arrived() bool
}

// Busy is implemented by a Handler that can tell how busy its connection
// is. The connection asks on its hot paths: both must be cheap.
type Busy interface {
	// Waiting reports whether a goroutine waits for a response on the
	// connection (see Leader).
	Waiting() bool
	// Crowded reports whether more than one exchange (calls of ours, or
	// requests of the peer's being handled) is in progress: more frames
	// will be written soon, and a writer may wait a moment for them to
	// share its system call.
	Crowded() bool
}

// ReadLimiter is implemented by a Conn whose frame size limit can be
// changed: the messenger lowers it to wire.MaxHelloFrame in its Binder, so
// that a connection that has not said hello cannot send a large frame, and
// raises it back to the transport's MaxFrame once the handshake is done.
// SetReadLimit is called from the Binder or from HandleFrame, never
// concurrently with them; it never raises the limit past MaxFrame.
type ReadLimiter interface {
	SetReadLimit(n int)
}

// WholeFrames is implemented by a Conn that moves a large frame better
// whole than as the messenger's chunks (UCX pulls it by rendezvous into
// the receiver's buffer): the messenger then cuts into chunks only what is
// over the peer's frame limit, in chunks of that limit, and small frames
// may wait behind a large one for its whole transfer.
type WholeFrames interface {
	WholeFrames() bool
}

// ChunkPlacer is implemented by a Handler that takes the data of chunk
// frames (wire.TypeChunk: the pieces of a large frame) into buffers of its
// own. A transport that reads a byte stream reads such a frame's head,
// asks PlaceChunk for the buffer its n data bytes go in, reads them
// straight there (no buffer per frame, no copy), and then gives
// HandleFrame the frame without its data. PlaceChunk returns nil to have
// the frame read whole, as any other. It is called on the receive path, by
// the goroutine that holds the connection's read turn; HandleFrame for
// that frame follows it, on that goroutine or, after a hand-over of the
// turn that orders the two, on the next holder's.
type ChunkPlacer interface {
	PlaceChunk(id uint64, n int) []byte
}

// Staller is implemented by a Conn that can tell how long its writes have
// made no progress: it has bytes to send and the network has taken none
// of them for the duration returned (zero when nothing waits). The
// messenger closes a connection whose writes stall for KeepaliveTimeout,
// even if frames still arrive on it: a peer that sends but does not read
// would otherwise hold every call of ours on it.
type Staller interface {
	WriteStalled(now time.Time) time.Duration
}

// Validator is implemented by a transport built from options that may be
// invalid (a negative size, an unknown protocol). Validate returns the
// error that its Listen and Dial would return, naming the transport, the
// field and the bad value ("velo: tcp: negative DialTimeout -5s"); nil
// when the options are good. The messenger's Build calls it on every
// transport before any starts listening, and refuses to build with its
// error.
type Validator interface {
	Validate() error
}

// Logged is implemented by a transport that logs (a listener's failed
// accepts, for one). The messenger calls SetLogger with its own logger
// before Listen; the transport logs there unless its options name a
// logger of their own.
type Logged interface {
	SetLogger(l *slog.Logger)
}

// LogSlot holds the logger that the messenger hands a transport through
// Logged.SetLogger, for transports whose own option names none. The zero
// value holds none; it is safe for concurrent use.
type LogSlot struct {
	mu sync.Mutex
	l  *slog.Logger // guarded by mu
}

// Set records l.
func (s *LogSlot) Set(l *slog.Logger) {
	s.mu.Lock()
	s.l = l
	s.mu.Unlock()
}

// For returns the logger a transport named name logs to: own if it is not
// nil, else the one set, each tagged with the transport's name; nil when
// there is neither (log nothing).
func (s *LogSlot) For(own *slog.Logger, name string) *slog.Logger {
	l := own
	if l == nil {
		s.mu.Lock()
		l = s.l
		s.mu.Unlock()
	}
	if l == nil {
		return nil
	}
	return l.With("transport", name)
}
