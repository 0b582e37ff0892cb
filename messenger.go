package velo

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/lograte"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
)

// selfName is the transport name of the connections an instance makes to
// itself.
const selfName = "self"

// Lifecycle states of a Messenger.
const (
	stateRunning  int32 = iota
	stateDraining       // Shutdown began: inbound requests are refused, running handlers finish
	stateClosing        // handlers are done: connections close, sends are refused
	stateClosed
)

// Messenger is one velo instance: it listens on its transports, runs its
// registered handlers, and calls the handlers of other instances. Make one
// with NewBuilder; every method is safe for concurrent use.
type Messenger struct {
	id         peer.ID
	info       peer.Info
	log        *slog.Logger
	opts       Options
	limits     wire.Limits
	transports []transport.Transport
	disc       discovery.PeerDiscovery
	reg        discovery.Registration
	events     *events.Manager
	// payloads are the large payload buffers kept for reuse (payloads.go),
	// apart from the messenger: the cleanups of the payloads handed out
	// hold them, and must not hold the messenger after its Shutdown.
	payloads *payloads
	streams  streamTable // the streams this instance receives and sends on
	// self carries calls of this instance to itself, in memory, at
	// selfAddr; it is in no peer.Info.
	self     *mem.Transport
	selfAddr string

	// handlerCtx is the parent of every handler's ctx; stopHandlers ends it
	// when Shutdown runs out of time.
	handlerCtx   context.Context
	stopHandlers context.CancelFunc
	// runCtx bounds the messenger's own work (dials); cancelled on closing.
	runCtx    context.Context
	cancelRun context.CancelFunc

	// client and server are the interceptors (intercept.go), fixed at
	// Build.
	client []ClientInterceptor
	server []ServerInterceptor

	handlers atomic.Pointer[map[string]*handlerEntry] // copy on write
	hmu      sync.Mutex                               // serialises registration
	// retiring holds the unregistered handlers whose actors still run
	// what they accepted. Guarded by hmu.
	retiring map[*handlerEntry]struct{}

	// Services (service.go, directory.go, route.go): handlerGen numbers
	// the changes to the user handlers, and publish wakes the goroutine
	// that tells discovery and the peers of them. routes is the index
	// of who offers what, rebuilt on the first pick after routesDirty is
	// set; changed is closed and replaced on every change to it.
	service     string
	handlerGen  atomic.Uint64
	publish     chan struct{}
	routes      atomic.Pointer[routeTable]
	routesDirty atomic.Bool
	changed     chan struct{} // guarded by mu
	watching    bool          // the discovery backend's Watch feeds the directory
	listMu      sync.Mutex
	listing     chan struct{} // guarded by listMu: closed when the listing in progress ends
	listedAt    time.Time     // guarded by listMu: when the last listing ended
	balancer    Balancer
	budget      retryBudget
	// retryByDefault: Options.Retry has retries or an attempt timeout,
	// so no call takes the direct path.
	retryByDefault bool
	retried        atomic.Uint64 // attempts after the first, of every call
	// inlineRuns counts the handlers running on a receive goroutine, and
	// inlineWatch is set while the goroutine that watches them runs
	// (inline.go).
	inlineRuns  atomic.Int32
	inlineWatch atomic.Bool
	ejected     atomic.Int32 // endpoints left out of routing now

	state   atomic.Int32
	closing chan struct{} // closed when the connections start closing
	wg      sync.WaitGroup

	mu    sync.RWMutex
	peers map[peer.ID]*peerState // guarded by mu
	// lastSess is the session sessionFor returned last, found again
	// without mu or a map lookup while calls go to one peer. It is stored
	// with mu held for reading, and emptied with mu held for writing
	// whenever a peer's session changes (setCallSession), so it never
	// holds a session that is no longer its peer's.
	lastSess atomic.Pointer[session]
	sessions map[*session]struct{} // guarded by mu: every open session
	// nsessions is len(sessions), read without mu (inline.go).
	nsessions atomic.Int32
	// eventPaths is, per peer, the connection its last _event_subscribe
	// came in on, where the outcomes go back. Guarded by mu.
	eventPaths map[peer.ID]*session

	// Limits on the log lines that peers can cause by the thousand
	// (see warn): failed one-way messages, refusals by full mailboxes,
	// and refused handshakes and event messages.
	oneWayLog, busyLog, peerLog, authLog *lograte.Limiter
	denied                               atomic.Uint64 // requests Authorize refused
	notFoundCount                        atomic.Uint64 // requests for a handler this instance lacks

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error
}

// InstanceID is this instance's id.
func (m *Messenger) InstanceID() peer.ID { return m.id }

// PeerInfo is this instance's id and the addresses of its transports, as
// other instances need it to reach this one.
func (m *Messenger) PeerInfo() peer.Info {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info.Clone()
}

func (m *Messenger) draining() bool { return m.state.Load() >= stateDraining }

// A flood of what a peer can cause by the thousand (AMSends to a handler
// that does not exist, requests refused by a full mailbox, impostor
// hellos) logs logBurst lines of each kind at once, then one per logEvery;
// a line that follows refusals says how many lines were left out.
const (
	logBurst = 10
	logEvery = time.Second
)

// warn logs msg at Warn, unless l refuses it.
func (m *Messenger) warn(l *lograte.Limiter, msg string, args ...any) {
	ok, left := l.Allow(time.Now())
	if !ok {
		return
	}
	if left > 0 {
		args = append(args, "suppressed", left)
	}
	m.log.Warn(msg, args...)
}

// logOneWay logs the failure of a one-way message, which has nobody to
// answer. A panic is not logged again here: the handler's actor logged
// it, with its stack, at Error.
func (m *Messenger) logOneWay(handler, sender string, err error) {
	switch {
	case errors.Is(err, ErrHandlerPanic):
	case errors.Is(err, ErrHandlerNotFound):
		m.warn(m.oneWayLog, "velo: am-send to a handler that does not exist", "handler", handler, "sender", sender)
	default:
		m.warn(m.oneWayLog, "velo: am-send handler failed", "handler", handler, "sender", sender, "err", err)
	}
}
