package velo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo/actor"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/mailbox"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
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

	handlers atomic.Pointer[map[string]*handlerEntry] // copy on write
	hmu      sync.Mutex                               // serialises registration

	state   atomic.Int32
	closing chan struct{} // closed when the connections start closing
	wg      sync.WaitGroup

	mu       sync.RWMutex
	peers    map[peer.ID]*peerState // guarded by mu
	sessions map[*session]struct{}  // guarded by mu: every open session
	// eventPaths is, per peer, the connection its last _event_subscribe
	// came in on, where the outcomes go back. Guarded by mu.
	eventPaths map[peer.ID]*session

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error
}

// peerState is what the messenger knows of one other instance.
type peerState struct {
	info     peer.Info
	sess     *session     // the connection calls use; nil when none is open
	dialing  *dialAttempt // non-nil while a connection attempt runs
	failures int          // consecutive failed attempts
	lastFail time.Time
	open     int // sessions to the peer whose handshake completed and that are still open
	// discovered: info came from the discovery backend, or from the
	// peer's own hello while a backend is configured; stale: a connection
	// to it failed since, so the next send asks again (the peer may have
	// restarted at another address).
	discovered, stale bool
	// manual: info came from RegisterPeer; discovery is never asked.
	manual bool
	// vouched: the addresses came from RegisterPeer or a discovery
	// lookup, not from the peer's own hello. Calls then go only over
	// connections dialed to them, a hello never replaces them, and
	// _event_trigger messages are taken only from those connections:
	// without authentication, a connection that says hello as this
	// instance may be anyone.
	vouched bool
	// introduced: the entry was made by the peer's own hello, not by
	// RegisterPeer or discovery; it is forgotten when its last connection
	// closes, so peers that come and go under new ids cost nothing.
	introduced bool
}

// dialAttempt is one connection attempt, shared by every caller that needs
// the peer while it runs.
type dialAttempt struct {
	done chan struct{}
	err  error // set before done is closed
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

// RegisterPeer tells the messenger how to reach another instance. The
// connection opens on the first send. Registering an instance again
// replaces its addresses; an open connection stays in use.
func (m *Messenger) RegisterPeer(info peer.Info) error {
	if err := info.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.learn(info)
	ps.manual = true
	ps.discovered, ps.stale = false, false
	m.vouchLocked(ps)
	return nil
}

// vouchLocked marks ps's addresses as vouched for, and stops calls from
// using a connection the peer opened to us: the next call dials. m.mu is
// held.
func (m *Messenger) vouchLocked(ps *peerState) {
	ps.vouched = true
	if ps.sess != nil && !ps.sess.dialed {
		ps.sess = nil
		for o := range m.sessions {
			if o.dialed && o.ready() && !o.closing.Load() && o.peer.ID == ps.info.ID {
				ps.sess = o
				break
			}
		}
	}
}

// learn records info; m.mu is held.
func (m *Messenger) learn(info peer.Info) *peerState {
	ps := m.peers[info.ID]
	if ps == nil {
		ps = &peerState{}
		m.peers[info.ID] = ps
	}
	if len(info.Addresses) > 0 {
		ps.info = info.Clone()
	} else if ps.info.ID.IsZero() {
		ps.info.ID = info.ID
	}
	return ps
}

// RegisterHandler adds h. A name already registered is refused with
// ErrHandlerExists, never replaced; names starting with '_' are reserved.
func (m *Messenger) RegisterHandler(h *Handler) error {
	if h == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalidHandler)
	}
	if system.IsReserved(h.name) {
		return fmt.Errorf("%w: name %q: names starting with '_' are reserved", ErrInvalidHandler, h.name)
	}
	return m.register(h)
}

func (m *Messenger) register(h *Handler) error {
	if h.err != nil {
		return h.err
	}
	if h.name == "" || len(h.name) > wire.MaxHandlerName {
		return fmt.Errorf("%w: name of %d bytes, want 1..%d", ErrInvalidHandler, len(h.name), wire.MaxHandlerName)
	}
	m.hmu.Lock()
	defer m.hmu.Unlock()
	if m.state.Load() != stateRunning {
		return newError(CodeShuttingDown, h.name, nil, "cannot register while shutting down")
	}
	cur := *m.handlers.Load()
	if _, ok := cur[h.name]; ok {
		return fmt.Errorf("%w: %q", ErrHandlerExists, h.name)
	}
	if err := helloRoom(cur, h.name); err != nil {
		return err
	}
	a, err := m.newActor(h)
	if err != nil {
		return err
	}
	next := maps.Clone(cur)
	next[h.name] = &handlerEntry{name: h.name, actor: a}
	m.handlers.Store(&next)
	return nil
}

func (m *Messenger) newActor(h *Handler) (*actor.Actor[peer.ID, *inbound], error) {
	name := h.name
	return actor.New(actor.Config[peer.ID, *inbound]{
		Name:           name,
		Mode:           h.mode,
		Mailbox:        h.mailbox,
		Overflow:       h.overflow,
		MaxConcurrency: h.maxConc,
		Restart:        h.restart,
		Logger:         m.log,
		Factory: func() func(context.Context, *inbound) {
			fn := h.factory()
			return func(ctx context.Context, in *inbound) {
				in.out, in.err = fn(ctx, &in.c)
			}
		},
		// The answer goes out once the handler's mailbox has room again,
		// so a caller that sends one call after another is never refused.
		Wait: func(in *inbound, waiting bool) {
			if waiting {
				in.s.stalled.Add(1)
			} else {
				in.s.stalled.Add(-1)
			}
		},
		After: func(in *inbound) {
			in.s.finish(in, in.out, in.err)
		},
		OnPanic: func(in *inbound, p *actor.PanicError) {
			// The actor has logged the panic; its stack is in p for errors.As.
			in.s.finish(in, nil, &Error{Code: CodeHandlerPanic, Handler: name, Message: fmt.Sprint(p.Value), cause: p})
		},
		// A request whose ctx ended while it waited for its turn (the
		// caller gave up, its deadline passed, Shutdown stopped the
		// handlers) is not run; it is answered with the ctx's error, as a
		// handler that honours its ctx would have answered.
		Expired: func(in *inbound, err error) {
			in.s.finish(in, nil, err)
		},
		Drop: func(in *inbound, err error) {
			in.s.finish(in, nil, m.tellError(name, nil, err))
		},
	})
}

// tellError turns a refusal by a handler's actor into the caller's error.
func (m *Messenger) tellError(handler string, ctx context.Context, err error) error {
	switch {
	case errors.Is(err, mailbox.ErrFull):
		m.log.Warn("velo: handler busy, request refused", "handler", handler)
		return newError(CodeBusy, handler, err, "mailbox of %q is full", handler)
	case m.draining() && (errors.Is(err, actor.ErrStopped) || errors.Is(err, mailbox.ErrClosed) || ctx == nil):
		return newError(CodeShuttingDown, handler, err, "instance %s is shutting down", m.id.Short())
	case errors.Is(err, actor.ErrStopped):
		return newError(CodeHandlerStopped, handler, err, "%v", err)
	case ctx != nil && ctx.Err() != nil:
		return ctxError(ctx, handler)
	}
	return newError(CodeInternal, handler, err, "%v", err)
}

// helloRoom refuses a user handler that this instance's hello could not
// list (system.MaxHelloHandlers, system.MaxHelloHandlerBytes): peers
// would refuse the hello, and no connection could be made.
func helloRoom(cur map[string]*handlerEntry, name string) error {
	if system.IsReserved(name) {
		return nil
	}
	n, bytes := 1, len(name)
	for other := range cur {
		if !system.IsReserved(other) {
			n, bytes = n+1, bytes+len(other)
		}
	}
	if err := system.CheckHandlers(n, bytes); err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalidHandler, name, err)
	}
	return nil
}

// handlerNames lists the user handlers, sorted.
func (m *Messenger) handlerNames() []string {
	var names []string
	for n := range *m.handlers.Load() {
		if !system.IsReserved(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// ListHandlers asks the instance id for the names of its handlers.
func (m *Messenger) ListHandlers(ctx context.Context, id peer.ID) ([]string, error) {
	b, err := m.Unary(system.ListHandlers).Instance(id).Send(ctx)
	if err != nil {
		return nil, err
	}
	names, err := system.DecodeNames(b)
	if err != nil {
		return nil, newError(CodeBadPayload, system.ListHandlers, err, "decoding handler names: %v", err)
	}
	return names, nil
}

func (m *Messenger) draining() bool { return m.state.Load() >= stateDraining }

// sessionFor returns the open session to id, connecting first if there is
// none. Concurrent callers share one connection attempt.
func (m *Messenger) sessionFor(ctx context.Context, id peer.ID, handler string) (*session, error) {
	if id.IsZero() {
		return nil, newError(CodePeerUnknown, handler, nil, "no instance given: use Instance(id)")
	}
	for {
		m.mu.RLock()
		ps := m.peers[id]
		var s *session
		known, stale := false, false
		if ps != nil {
			s = ps.sess
			known, stale = len(ps.info.Addresses) > 0, ps.stale
		}
		m.mu.RUnlock()
		if s != nil {
			return s, nil
		}
		if m.state.Load() >= stateClosing {
			return nil, newError(CodeShuttingDown, handler, nil, "instance %s is shutting down", m.id.Short())
		}
		if !known {
			if err := m.discover(ctx, id, handler); err != nil {
				return nil, err
			}
		} else if stale && m.disc != nil {
			if err := m.discover(ctx, id, handler); err != nil {
				if errors.Is(err, discovery.ErrNotFound) {
					return nil, err
				}
				// The backend is unreachable: try the address we had.
				m.log.Debug("velo: discovery lookup failed; using the last known address", "peer", id.Short(), "err", err)
			}
		}
		att, s := m.startDial(id)
		if s != nil {
			return s, nil
		}
		select {
		case <-att.done:
			if att.err != nil {
				var ve *Error
				if errors.As(att.err, &ve) {
					e := *ve
					e.Handler = handler
					return nil, &e
				}
				return nil, att.err
			}
		case <-ctx.Done():
			return nil, ctxError(ctx, handler)
		}
	}
}

// discover asks the discovery backend for an instance nobody registered.
func (m *Messenger) discover(ctx context.Context, id peer.ID, handler string) error {
	if m.disc == nil {
		return newError(CodePeerUnknown, handler, nil, "instance %s is not registered and no discovery is configured", id)
	}
	info, err := m.disc.Lookup(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx, handler)
		}
		return newError(CodePeerUnknown, handler, err, "instance %s: %v", id, err)
	}
	if info.ID != id {
		return newError(CodePeerUnknown, handler, nil, "discovery answered %s for %s", info.ID, id)
	}
	m.mu.Lock()
	ps := m.learn(info)
	ps.discovered, ps.stale = true, false
	m.vouchLocked(ps)
	m.mu.Unlock()
	return nil
}

// startDial joins the running connection attempt to id or starts one. It
// returns the session instead if one opened meanwhile.
func (m *Messenger) startDial(id peer.ID) (*dialAttempt, *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.peers[id]
	if ps.sess != nil {
		return nil, ps.sess
	}
	if ps.dialing != nil {
		return ps.dialing, nil
	}
	if m.state.Load() >= stateClosing {
		// Checked under mu, which Shutdown takes to enter closing: no
		// dial goroutine starts after Shutdown began waiting for them.
		att := &dialAttempt{done: make(chan struct{}), err: newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())}
		close(att.done)
		return att, nil
	}
	att := &dialAttempt{done: make(chan struct{})}
	ps.dialing = att
	var delay time.Duration
	if ps.failures > 0 {
		delay = time.Until(ps.lastFail.Add(m.backoff(ps.failures)))
	}
	info := ps.info.Clone()
	m.wg.Add(1)
	go m.dial(ps, att, info, delay)
	return att, nil
}

// backoff is the pause before attempt n+1 after n consecutive failures.
func (m *Messenger) backoff(n int) time.Duration {
	d := m.opts.ReconnectBackoff
	for i := 1; i < n && d < m.opts.MaxReconnectBackoff; i++ {
		d *= 2
	}
	return min(d, m.opts.MaxReconnectBackoff)
}

// dial runs one connection attempt on a goroutine of the messenger's, so
// that no caller's cancellation aborts an attempt others wait for.
func (m *Messenger) dial(ps *peerState, att *dialAttempt, info peer.Info, delay time.Duration) {
	defer m.wg.Done()
	var s *session
	var err error
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.closing:
			err = newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())
		}
		t.Stop()
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(m.runCtx, m.opts.DialTimeout)
		s, err = m.connect(ctx, info)
		cancel()
	}
	m.mu.Lock()
	ps.dialing = nil
	if err != nil {
		ps.failures++
		ps.lastFail = time.Now()
		ps.stale = ps.discovered
	} else {
		ps.failures = 0
		if ps.sess == nil {
			ps.sess = s
		}
	}
	att.err = err
	m.mu.Unlock()
	close(att.done)
}

// connect tries the transports in priority order that info has an address
// for, and returns the first session whose handshake succeeds.
func (m *Messenger) connect(ctx context.Context, info peer.Info) (*session, error) {
	if info.ID == m.id {
		// Calls to this instance never leave the process: they go over
		// an in-memory connection of its own.
		return m.dialVia(ctx, m.self, m.selfAddr, m.id)
	}
	var errs []error
	for _, t := range m.dialOrder(info) {
		addr, ok := info.Address(t.Name())
		if !ok {
			continue
		}
		s, err := m.dialVia(ctx, t, addr, info.ID)
		if err == nil {
			return s, nil
		}
		m.log.Debug("velo: connection attempt failed", "peer", info.ID.Short(), "transport", t.Name(), "addr", addr, "err", err)
		errs = append(errs, fmt.Errorf("%s %s: %w", t.Name(), addr, err))
	}
	if len(errs) == 0 {
		return nil, newError(CodePeerUnknown, "", nil, "instance %s has no address for any transport of this instance", info.ID)
	}
	if ctx.Err() != nil && m.state.Load() >= stateClosing {
		return nil, newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())
	}
	err := errors.Join(errs...)
	var ve *Error
	if len(errs) == 1 && errors.As(err, &ve) {
		return nil, err
	}
	return nil, newError(CodePeerLost, "", err, "cannot reach %s: %v", info.ID.Short(), err)
}

// dialOrder is the order connect tries transports for info: the order they
// were added, except that a transport that reports the peer's address as
// on this host (transport.Local, such as UDS) comes first. The handshake
// still checks who answers, so a path is never trusted on its own.
func (m *Messenger) dialOrder(info peer.Info) []transport.Transport {
	local := make([]transport.Transport, 0, len(m.transports))
	var rest []transport.Transport
	for _, t := range m.transports {
		addr, ok := info.Address(t.Name())
		if l, isLocal := t.(transport.Local); ok && isLocal && l.Local(addr) {
			local = append(local, t)
		} else {
			rest = append(rest, t)
		}
	}
	return append(local, rest...)
}

// dialVia opens a connection over t and runs the handshake on it.
func (m *Messenger) dialVia(ctx context.Context, t transport.Transport, addr string, want peer.ID) (*session, error) {
	var s *session
	_, err := t.Dial(ctx, addr, func(c transport.Conn) transport.Handler {
		s = newSession(m, c, t.Name(), true)
		m.track(s)
		return s
	})
	if err != nil {
		return nil, err
	}
	hello, err := m.helloPayload()
	if err != nil {
		s.close(err)
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, m.opts.HandshakeTimeout)
	defer cancel()
	req := wire.Request{Kind: wire.KindUnary, Handler: system.Hello, Payload: hello}
	if _, err := s.roundTrip(hctx, &req); err != nil {
		s.close(err)
		return nil, err
	}
	if s.peer.ID != want {
		err := newError(CodePeerUnknown, "", nil, "%s answered as instance %s, want %s", addr, s.peer.ID, want)
		s.close(err)
		return nil, err
	}
	return s, nil
}

func (m *Messenger) helloPayload() ([]byte, error) {
	// PeerInfo: Build may still be adding addresses while the first
	// peers connect.
	h := system.HelloMsg{Info: m.PeerInfo(), Handlers: m.handlerNames(), MaxFrame: m.maxFrame(), Protocol: wire.Version}
	return h.Encode()
}

// maxFrame is the largest frame every transport of this instance reads.
func (m *Messenger) maxFrame() int {
	n := wire.DefaultMaxFrame
	for _, t := range m.transports {
		n = min(n, t.MaxFrame())
	}
	return n
}

// acceptHello completes the handshake of an inbound connection: it records
// who the peer is, answers with this instance's Hello, and only then makes
// the session available for calls, so that the peer sees the answer before
// any request of ours.
func (m *Messenger) acceptHello(s *session, req *wire.Request) error {
	in := newInbound(s, req)
	if m.state.Load() >= stateClosing {
		s.finish(in, nil, newError(CodeShuttingDown, system.Hello, nil, "instance %s is shutting down", m.id.Short()))
		return errors.New("velo: handshake refused: shutting down")
	}
	h, err := system.DecodeHello(req.Payload)
	if err != nil {
		return fmt.Errorf("velo: handshake: %w", err)
	}
	if err := m.admitHello(s, h.Info.ID); err != nil {
		s.finish(in, nil, err)
		return err
	}
	if err := s.completeHello(&h); err != nil {
		return err
	}
	reply, err := m.helloPayload()
	if err != nil {
		return err
	}
	s.finish(in, reply, nil)
	m.mu.Lock()
	ps, known := m.peers[h.Info.ID]
	if !known || !ps.vouched {
		// A hello never replaces what RegisterPeer or discovery said.
		ps = m.learn(h.Info)
	}
	if !known {
		ps.introduced = true
	}
	// A peer that introduced itself is asked about again, like one that
	// was looked up, when its connection fails: it may come back at
	// another address.
	if m.disc != nil && !ps.manual {
		ps.discovered = true
	}
	if ps.sess == nil && !ps.vouched {
		ps.sess = s
	}
	m.mu.Unlock()
	return nil
}

// admitHello refuses an inbound hello that claims this instance's own id,
// or the id of a peer that already has a live connection to us that it
// opened: one of the two is not who it says.
func (m *Messenger) admitHello(s *session, id peer.ID) error {
	if id == m.id && s.tname != selfName {
		m.log.Warn("velo: handshake refused: a peer claims this instance's id", "addr", s.conn.RemoteAddr())
		return newError(CodePeerUnknown, system.Hello, nil, "%s claims to be this instance (%s)", s.conn.RemoteAddr(), id.Short())
	}
	o := m.inboundFrom(s, id)
	if o == nil {
		return nil
	}
	// A peer that reconnects at once may find its old connection not yet
	// seen closed: give that close a moment before refusing.
	t := time.NewTimer(helloConflictWait)
	defer t.Stop()
	select {
	case <-o.done:
		if o = m.inboundFrom(s, id); o == nil {
			return nil
		}
	case <-t.C:
	}
	m.log.Warn("velo: handshake refused: instance already connected", "peer", id.Short(), "addr", s.conn.RemoteAddr(), "connected_from", o.conn.RemoteAddr())
	return newError(CodePeerUnknown, system.Hello, nil, "instance %s is already connected from %s", id.Short(), o.conn.RemoteAddr())
}

// helloConflictWait is how long an inbound hello that claims the id of a
// connected peer waits for that peer's other connection to close.
const helloConflictWait = 200 * time.Millisecond

// inboundFrom returns another live connection that the peer id opened to
// us, if there is one.
func (m *Messenger) inboundFrom(s *session, id peer.ID) *session {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for o := range m.sessions {
		if o != s && !o.dialed && o.ready() && !o.closing.Load() && o.peer.ID == id {
			return o
		}
	}
	return nil
}

func (m *Messenger) track(s *session) {
	m.mu.Lock()
	m.sessions[s] = struct{}{}
	m.mu.Unlock()
}

// sessionClosed forgets a session whose connection ended. If another open
// session to the same peer exists (both sides dialed at once), calls move
// to it.
func (m *Messenger) sessionClosed(s *session, reason error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, s)
	if !s.ready() {
		return
	}
	if m.eventPaths[s.peer.ID] == s {
		delete(m.eventPaths, s.peer.ID)
	}
	m.peerDownLocked(s)
	ps := m.peers[s.peer.ID]
	if ps == nil || ps.sess != s {
		return
	}
	ps.stale = ps.discovered
	ps.sess = nil
	for o := range m.sessions {
		if o.ready() && o.peer.ID == s.peer.ID && (o.dialed || !ps.vouched) {
			ps.sess = o
			break
		}
	}
	if ps.sess == nil && ps.introduced && !ps.manual && !ps.discovered && ps.dialing == nil && ps.open == 0 {
		delete(m.peers, s.peer.ID)
	}
	if m.state.Load() < stateClosing {
		m.log.Debug("velo: connection closed", "peer", s.peer.ID.Short(), "transport", s.tname, "reason", reason)
	}
}
