package events

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/velo-messenger/velo/peer"
)

// Network sends event messages to other instances. The messenger implements
// it with a fire-and-forget active message (AMSend).
//
// Send may be called from several goroutines at once. It returns once the
// message is handed to the transport, or with an error (the peer cannot be
// reached, ctx ended). It should dial the peer if no connection is open.
// The manager never modifies payload after the call, so Send may keep it.
type Network interface {
	Send(ctx context.Context, to peer.ID, handler string, payload []byte) error
}

// Manager owns the events of one instance and proxies the events of others.
//
// Local events live in a slot table: a handle's Index picks the slot and its
// Generation must match the slot's, so a slot can be reused without a stale
// handle ever seeing the newer event. Its Epoch must be the manager's, so a
// handle issued before the instance restarted never names an event of the
// new incarnation. Remote events are awaited through one proxy per event,
// subscribed to its owner over the Network; see docs/events.md for the
// protocol and the failure rules.
//
// All methods are safe for concurrent use.
type Manager struct {
	self  peer.ID
	epoch uint64  // stamped on every local handle; see newEpoch
	net   Network // nil: local events only
	opts  Options
	log   *slog.Logger

	backoffMin, backoffMax time.Duration // between retries to a peer in trouble

	ctx    context.Context // ends at Close: aborts the manager's own sends
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per running link goroutine

	// mu guards everything below. Completing an event, recording a remote
	// subscriber and answering a subscription all happen under it, which is
	// what makes a trigger racing a subscription impossible to miss.
	mu      sync.Mutex
	closed  bool // Close or Shutdown began: public operations fail
	stopped bool // no new goroutine may start
	slots   []slot
	reuse   fifo // indices of completed slots, oldest completion first
	pending int  // slots whose event is not completed
	links   map[peer.ID]*link
	cache   *simplelru.LRU[Handle, error] // outcomes of completed remote events
	proxies int                           // sum of len(link.proxies)
	subs    int                           // sum of len(link.subs)
}

// NewManager returns a manager for the instance self. net carries messages
// to other instances; with a nil net the manager handles local events only
// and refuses remote handles with ErrNoNetwork. Zero fields of opts take
// their defaults (see Options). NewManager panics with Validate's error
// on options it rejects, as time.NewTicker does on a period that is not
// positive; the messenger's Build reports them as an error instead.
func NewManager(self peer.ID, net Network, opts Options) *Manager {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	opts = opts.withDefaults()
	// The size is positive after withDefaults, the only error NewLRU has.
	cache, _ := simplelru.NewLRU[Handle, error](opts.CacheSize, nil)
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		self:   self,
		epoch:  newEpoch(),
		net:    net,
		opts:   opts,
		log:    opts.Logger,
		ctx:    ctx,
		cancel: cancel,
		links:  make(map[peer.ID]*link),
		cache:  cache,
	}
	m.backoffMin = min(max(opts.OwnerLostAfter/100, time.Millisecond), 50*time.Millisecond)
	m.backoffMax = min(max(opts.OwnerLostAfter/5, m.backoffMin), time.Second)
	return m
}

// newEpoch draws a manager's epoch: 64 bits from the operating system's
// random source, never 0 (the zero Handle's). An instance that restarts
// under the same ID starts a new Manager, hence a new epoch, while Index
// and Generation start again from the beginning; the epoch is what tells
// the new incarnation's handles from the old ones. A counter or a clock
// would need state that survives the restart, or a clock that never steps
// back; 64 random bits need neither. Two incarnations of one ID draw the
// same epoch with probability 2⁻⁶⁴, which a stale handle must then also
// meet with the same index and generation to be taken for a newer event.
func newEpoch() uint64 {
	var b [8]byte
	for {
		// crypto/rand.Read never fails on supported platforms (Go 1.24+
		// crashes the program instead of returning an error).
		rand.Read(b[:])
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

// Self returns the instance the manager owns events for.
func (m *Manager) Self() peer.ID { return m.self }

// Epoch returns the incarnation number the manager stamps on the handles
// of its events (Handle.Epoch): random, non-zero, drawn by NewManager.
func (m *Manager) Epoch() uint64 { return m.epoch }

// Trigger completes the event h successfully. For a local handle it acts at
// once, like Event.Trigger. For a remote one it asks the owner over the
// network and returns when the request is handed to the transport: the
// owner then triggers the event, unless it already completed, which only
// the owner sees (a cached completed outcome is reported here, though, as
// ErrAlreadyCompleted).
func (m *Manager) Trigger(ctx context.Context, h Handle) error {
	return m.completeAny(ctx, h, kindTriggered, "")
}

// Poison completes the event h with a failure carrying reason, which every
// awaiter receives intact. Local and remote handles behave as in Trigger.
func (m *Manager) Poison(ctx context.Context, h Handle, reason string) error {
	if len(reason) > MaxReasonLen {
		return ErrReasonTooLong
	}
	return m.completeAny(ctx, h, kindPoisoned, reason)
}

func (m *Manager) completeAny(ctx context.Context, h Handle, k kind, reason string) error {
	if h.Owner == m.self {
		return m.complete(h, k, reason)
	}
	if m.net == nil {
		return ErrNoNetwork
	}
	m.mu.Lock()
	closed := m.closed
	cached, done := m.cache.Peek(h)
	m.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case done && cached != nil && !errors.Is(cached, ErrPoisoned):
		return cached // the owner said the event is gone, or it restarted
	case done:
		return fmt.Errorf("%w: %s", ErrAlreadyCompleted, h)
	}
	return m.net.Send(ctx, h.Owner, CompleteHandler, appendOutcome(nil, h, k, reason))
}

// Awaiter returns an awaiter for the event h, local or remote.
//
// For a local handle whose slot was reused by a newer event, it returns
// ErrEventGone; for a handle that an earlier incarnation of this instance
// issued (another Epoch), ErrOwnerRestarted. A remote handle is looked up in three tiers: the cache of
// recently completed remote events (resolved at once, no message), the
// proxies already subscribed (the awaiter shares the proxy, no message),
// and finally the network (a new proxy sends one subscription to the owner).
func (m *Manager) Awaiter(h Handle) (*Awaiter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if h.Owner == m.self {
		return m.localAwaiterLocked(h)
	}
	if m.net == nil {
		return nil, ErrNoNetwork
	}
	return m.remoteAwaiterLocked(h), nil
}

// Deliver handles one event message that arrived from the instance from
// under one of the reserved handler names. The messenger calls it for every
// _event_* message; it never blocks on the network (answers are queued)
// and does not keep payload.
//
// Errors matching ErrMalformed mean the payload could not be decoded or
// broke the protocol; the message was ignored. A complete message that
// loses (the event already completed, is gone, or is of an earlier
// incarnation: ErrOwnerRestarted) reports that too, for the log. ErrClosed
// means the manager is closed.
func (m *Manager) Deliver(ctx context.Context, from peer.ID, handler string, payload []byte) error {
	switch handler {
	case SubscribeHandler:
		hs, err := parseSubscribe(payload)
		if err != nil {
			return err
		}
		return m.onSubscribe(from, hs)
	case TriggerHandler:
		h, k, reason, err := parseOutcome(payload, true)
		if err != nil {
			return err
		}
		return m.onTrigger(from, h, k, reason)
	case CompleteHandler:
		h, k, reason, err := parseOutcome(payload, false)
		if err != nil {
			return err
		}
		if h.Owner != m.self {
			return malformed("complete for %s sent to %s", h, m.self.Short())
		}
		return m.complete(h, k, reason)
	}
	return malformed("handler %q is not an event handler", handler)
}

// Close closes the manager at once: every local event still pending is
// poisoned with the reason "manager closed", every awaiter of a remote event
// fails with ErrClosed, queued messages are dropped, and the manager's
// goroutines have ended when Close returns. Later calls fail with ErrClosed.
// Close is idempotent.
//
// Remote subscribers of the poisoned events are told only if their trigger
// message goes out before Close aborts the sends; use Shutdown to wait for
// them. A subscriber that is not told sees the owner lost.
func (m *Manager) Close() { _ = m.shutdown(nil) }

// Shutdown is Close, except that before aborting it waits until ctx ends
// for queued messages (the poison of the events Shutdown completed among
// them) to be handed to the network. It returns ctx's error if it had to
// drop some.
func (m *Manager) Shutdown(ctx context.Context) error { return m.shutdown(ctx) }

// ClosedReason is the poison reason of the events still pending when the
// manager closes.
const ClosedReason = "manager closed"

func (m *Manager) shutdown(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		for i := range m.slots {
			s := &m.slots[i]
			if s.kind == kindPending {
				h := Handle{Owner: m.self, Epoch: m.epoch, Index: uint32(i), Generation: s.gen}
				m.finishLocked(h, s, kindPoisoned, ClosedReason)
			}
		}
		for _, l := range m.links {
			m.failProxiesLocked(l, ErrClosed)
			l.newSubs, l.resync = nil, false
		}
	}
	m.mu.Unlock()

	var err error
	if ctx != nil {
		// Let the link goroutines drain their queues. Nothing adds to the
		// WaitGroup any more: every entry point checks closed, so this Wait
		// cannot race an Add from zero.
		drained := make(chan struct{})
		go func() { m.wg.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-ctx.Done():
			err = ctx.Err()
		}
		m.cancel()
		<-drained
	}
	m.cancel()
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.wg.Wait()
	return err
}

// Stats is a snapshot of the manager's bookkeeping. Each count returns to
// zero (or to the retention bound for Retained, Slots and Cached) once the
// events in flight complete.
type Stats struct {
	Pending       int // local events created and not yet completed
	Retained      int // completed local events whose outcome is still kept
	Slots         int // size of the local slot table: Pending + Retained
	Subscriptions int // (pending local event, remote subscriber) pairs
	Proxies       int // remote events awaited here, answer not yet received
	Cached        int // completed remote outcomes in the cache
	Peers         int // remote peers the manager keeps state for
	Queued        int // messages waiting for the network
}

// Stats returns a snapshot of the manager's bookkeeping.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Stats{
		Pending:       m.pending,
		Retained:      m.reuse.len(),
		Slots:         len(m.slots),
		Subscriptions: m.subs,
		Proxies:       m.proxies,
		Cached:        m.cache.Len(),
		Peers:         len(m.links),
	}
	for _, l := range m.links {
		st.Queued += len(l.triggers) + len(l.newSubs)
	}
	return st
}
