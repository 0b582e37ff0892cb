package velo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/lograte"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Builder assembles a Messenger. Its methods return the builder so that
// calls chain; Build starts the messenger.
type Builder struct {
	transports []transport.Transport
	disc       discovery.PeerDiscovery
	log        *slog.Logger
	opts       Options
	eventOpts  eventOptions
	id         peer.ID
	service    string
	handle     []*Handler
	client     []ClientInterceptor
	server     []ServerInterceptor
}

// NewBuilder returns a builder with no transport (Build then adds TCP on
// 127.0.0.1 with a port chosen by the system), no discovery and no logger.
func NewBuilder() *Builder { return &Builder{} }

// AddTransport adds a transport. Transports are tried in the order added
// when connecting to a peer that has addresses for several.
func (b *Builder) AddTransport(t transport.Transport) *Builder {
	b.transports = append(b.transports, t)
	return b
}

// Discovery sets the backend asked about instances that were never
// registered with RegisterPeer. The messenger registers itself there on
// Build and withdraws on Shutdown.
func (b *Builder) Discovery(d discovery.PeerDiscovery) *Builder { b.disc = d; return b }

// Logger sets where velo logs. By default it logs nothing. Transports
// without a logger of their own (transport.Logged) log there too.
func (b *Builder) Logger(l *slog.Logger) *Builder { b.log = l; return b }

// Options sets tuning options.
func (b *Builder) Options(o Options) *Builder { b.opts = o; return b }

// EventOptions tunes the event manager (cache size, owner-lost bound).
func (b *Builder) EventOptions(o events.Options) *Builder {
	b.eventOpts = eventOptions{o}
	return b
}

type eventOptions struct{ events.Options }

func (o eventOptions) withLogger(l *slog.Logger) events.Options {
	if o.Logger == nil {
		o.Logger = l
	}
	return o.Options
}

// Service names the service this instance belongs to: its Info says so
// in discovery and in its hellos, sends with .Service(name) are routed
// among the instances of that name that offer the handler, and
// Instances(name) lists them. An instance belongs to one service or none.
func (b *Builder) Service(name string) *Builder { b.service = name; return b }

// Handle registers handlers as Build starts the instance, before any
// transport listens and before the instance is published to discovery,
// so that no peer ever sees the instance without them. A handler that
// RegisterHandler would refuse makes Build fail. Handlers may still be
// registered (and unregistered) later; the instance then publishes its
// new list.
func (b *Builder) Handle(h ...*Handler) *Builder {
	b.handle = append(b.handle, h...)
	return b
}

// InstanceID fixes the instance id instead of drawing a random one, for
// an instance that must keep its identity across restarts.
func (b *Builder) InstanceID(id peer.ID) *Builder { b.id = id; return b }

// Build starts the transports' listeners and returns the running
// messenger. On error everything started is closed again.
func (b *Builder) Build(ctx context.Context) (*Messenger, error) {
	if err := errors.Join(b.opts.Validate(), b.eventOpts.Validate()); err != nil {
		return nil, err
	}
	opts := b.opts.withDefaults()
	transports := b.transports
	if len(transports) == 0 {
		transports = []transport.Transport{tcp.New(tcp.Options{})}
	}
	seen := make(map[string]string)
	for _, t := range transports {
		if t == nil {
			return nil, errors.New("velo: nil transport")
		}
		if _, ok := seen[t.Name()]; ok {
			return nil, fmt.Errorf("velo: transport %q added twice", t.Name())
		}
		seen[t.Name()] = ""
		// Before any transport listens: a bad option is the caller's
		// mistake, found without opening a port.
		if v, ok := t.(transport.Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		}
	}
	// The hello lists every transport's address: peers refuse one over
	// its limits (count, name length here; address length once known).
	if err := system.CheckAddresses(seen); err != nil {
		return nil, fmt.Errorf("velo: transports: %w", err)
	}
	if len(b.service) > peer.MaxServiceName {
		return nil, fmt.Errorf("velo: service name of %d bytes, the most is %d", len(b.service), peer.MaxServiceName)
	}
	log := b.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := b.id
	if id.IsZero() {
		id = peer.NewID()
	}
	m := &Messenger{
		id:           id,
		log:          log.With("instance", id.Short()),
		opts:         opts,
		limits:       wire.Limits{MaxHeaders: opts.MaxHeaders, MaxHeaderBytes: opts.MaxHeaderBytes},
		transports:   transports,
		disc:         b.disc,
		closing:      make(chan struct{}),
		peers:        make(map[peer.ID]*peerState),
		sessions:     make(map[*session]struct{}),
		eventPaths:   make(map[peer.ID]*session),
		streams:      streamTable{recv: make(map[uint64]*rstream), send: make(map[uint64]*sstream)},
		payloads:     new(payloads),
		shutdownDone: make(chan struct{}),
		oneWayLog:    lograte.New(logBurst, logEvery),
		busyLog:      lograte.New(logBurst, logEvery),
		peerLog:      lograte.New(logBurst, logEvery),
		authLog:      lograte.New(logBurst, logEvery),
		retiring:     make(map[*handlerEntry]struct{}),
		service:      b.service,
		publish:      make(chan struct{}, 1),
		changed:      make(chan struct{}),
		balancer:     opts.Balancer,
		client:       b.client,
		server:       b.server,
	}
	if m.balancer == nil {
		m.balancer = LeastLoaded()
	}
	m.budget.init(opts.RetryBudget)
	m.retryByDefault = opts.Retry.Attempts > 1 || opts.Retry.AttemptTimeout > 0
	m.routes.Store(&routeTable{})
	m.routesDirty.Store(true)
	m.handlerCtx, m.stopHandlers = context.WithCancel(context.Background())
	m.runCtx, m.cancelRun = context.WithCancel(context.Background())
	empty := map[string]*handlerEntry{}
	m.handlers.Store(&empty)
	m.info = peer.Info{ID: id, Addresses: make(map[string]string), Service: b.service}

	fail := func(err error) (*Messenger, error) {
		for _, t := range transports {
			t.Close()
		}
		if m.self != nil {
			m.self.Close()
		}
		m.stopHandlers()
		m.cancelRun()
		m.wg.Wait() // the discovery watch
		if m.events != nil {
			m.events.Close()
		}
		return nil, err
	}
	m.events = events.NewManager(id, eventNetwork{m}, b.eventOpts.withLogger(log))
	if err := m.registerSystemHandlers(); err != nil {
		return fail(err)
	}
	for _, h := range b.handle {
		if err := m.RegisterHandler(h); err != nil {
			return fail(fmt.Errorf("velo: Handle: %w", err))
		}
	}
	for _, t := range transports {
		if lt, ok := t.(transport.Logged); ok {
			lt.SetLogger(m.log)
		}
		name := t.Name()
		addr, err := t.Listen(ctx, func(c transport.Conn) transport.Handler {
			s := newSession(m, c, name, false)
			m.track(s)
			return s
		})
		if err != nil {
			return fail(fmt.Errorf("velo: transport %s: %w", name, err))
		}
		if err := system.CheckAddresses(map[string]string{name: addr}); err != nil {
			return fail(fmt.Errorf("velo: transport %s: %w", name, err))
		}
		// The listener is live: peers may be saying hello already.
		m.mu.Lock()
		m.info.Addresses[name] = addr
		m.mu.Unlock()
	}
	m.self = mem.New(mem.NewNetwork())
	selfAddr, err := m.self.Listen(ctx, func(c transport.Conn) transport.Handler {
		s := newSession(m, c, selfName, false)
		m.track(s)
		return s
	})
	if err != nil {
		return fail(fmt.Errorf("velo: the connection to itself: %w", err))
	}
	m.selfAddr = selfAddr
	m.mu.Lock()
	m.learn(m.info).vouched = true // an instance may call its own handlers
	m.mu.Unlock()
	if w, ok := m.disc.(discovery.Watcher); ok {
		ch, err := w.Watch(m.runCtx)
		if err != nil {
			m.log.Warn("velo: discovery: cannot watch; instances are looked up as they are called", "err", err)
		} else {
			m.watching = true
			m.wg.Add(1)
			go m.watchDiscovery(ch)
		}
	}
	if m.disc != nil {
		// The first calls know every instance the backend lists.
		m.list(ctx)
	}
	// The generation is read before the Info: a handler registered in
	// between is published again, never missed.
	published := m.handlerGen.Load()
	if m.disc != nil {
		reg, err := m.disc.Register(ctx, m.PeerInfo())
		if err != nil {
			return fail(fmt.Errorf("velo: discovery: %w", err))
		}
		m.reg = reg
	}
	m.wg.Add(1)
	go m.publisher(published)
	m.wg.Add(1)
	go m.keepalive()
	m.log.Debug("velo: instance started", "addresses", m.PeerInfo().String())
	return m, nil
}

func (m *Messenger) registerSystemHandlers() error {
	return errors.Join(
		m.register(UnaryHandler(system.ListHandlers, func(context.Context, *Context) ([]byte, error) {
			return system.EncodeNames(m.handlerNames())
		}).Inline().Build()),
		m.register(UnaryHandler(system.Ping, func(context.Context, *Context) ([]byte, error) {
			return nil, nil
		}).Inline().Build()),
		m.register(UnaryHandler(system.Describe, m.answerDescribe).Build()),
		m.registerStats(),
	)
}
