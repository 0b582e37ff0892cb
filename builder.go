package velo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/lograte"
	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Defaults applied to the zero fields of Options.
const (
	// DefaultKeepaliveInterval is how long a connection may stay silent
	// before velo pings it.
	DefaultKeepaliveInterval = 2 * time.Second
	// DefaultKeepaliveTimeout is how long a connection may go without
	// receiving a frame before its peer is declared lost.
	DefaultKeepaliveTimeout = 7 * time.Second
	// DefaultHandshakeTimeout bounds the _hello exchange.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultDialTimeout bounds one connection attempt, handshake
	// included.
	DefaultDialTimeout = 10 * time.Second
	// DefaultReconnectBackoff is the first pause before retrying a peer.
	DefaultReconnectBackoff = 50 * time.Millisecond
	// DefaultMaxReconnectBackoff is the longest pause before retrying a
	// peer.
	DefaultMaxReconnectBackoff = 5 * time.Second
	// DefaultMaxHeaders is the most headers on one request.
	DefaultMaxHeaders = wire.DefaultMaxHeaders // 64
	// DefaultMaxHeaderBytes bounds the keys and values of one request's
	// headers, in bytes.
	DefaultMaxHeaderBytes = wire.DefaultMaxHeaderBytes // 16 KiB
	// DefaultMaxCallsInFlight is the most calls waiting on one peer.
	DefaultMaxCallsInFlight = 65536
)

// maxHeaders is the largest MaxHeaders: a request carries its count of
// headers in 16 bits.
const maxHeaders = 1<<16 - 1

// Options tune a Messenger. The zero value of each field means its
// default; Validate reports the values that are wrong, and Build refuses
// them.
type Options struct {
	// KeepaliveInterval is how long a connection may stay silent before
	// velo pings it. Zero: DefaultKeepaliveInterval (2 s).
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long a connection may go without receiving
	// any frame before its peer is declared lost and its calls fail with
	// ErrPeerLost; it must exceed KeepaliveInterval. A dead or silent
	// peer is detected within this plus half the interval. Zero:
	// DefaultKeepaliveTimeout (7 s, so within 8 s by default).
	KeepaliveTimeout time.Duration
	// HandshakeTimeout bounds the _hello exchange on a new connection, in
	// both directions: an inbound connection that does not say hello in
	// time is closed. Zero: DefaultHandshakeTimeout (5 s).
	HandshakeTimeout time.Duration
	// DialTimeout bounds one connection attempt, handshake included.
	// Zero: DefaultDialTimeout (10 s).
	DialTimeout time.Duration
	// ReconnectBackoff is the pause before retrying a peer after a failed
	// connection attempt; it doubles with each consecutive failure up to
	// MaxReconnectBackoff, which must not be below it. Zero:
	// DefaultReconnectBackoff (50 ms) and DefaultMaxReconnectBackoff
	// (5 s).
	ReconnectBackoff    time.Duration
	MaxReconnectBackoff time.Duration
	// MaxHeaders and MaxHeaderBytes bound the headers of one request, sent
	// or received; MaxHeaders is at most 65535. Zero: DefaultMaxHeaders
	// (64) and DefaultMaxHeaderBytes (16 KiB).
	MaxHeaders     int
	MaxHeaderBytes int
	// MaxCallsInFlight bounds the AMSync, Unary and TypedUnary calls this
	// instance has waiting on one peer at once. Zero:
	// DefaultMaxCallsInFlight (65536).
	MaxCallsInFlight int
	// RejectCallsOverLimit makes a call beyond MaxCallsInFlight fail at
	// once with ErrBusy; by default it waits for a call to end (or for
	// its ctx).
	RejectCallsOverLimit bool
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: negative DialTimeout -1s"), and the pairs
// of fields that contradict each other once the zero ones took their
// defaults.
func (o Options) Validate() error {
	err := errors.Join(
		optcheck.NotNegative("", "KeepaliveInterval", o.KeepaliveInterval),
		optcheck.NotNegative("", "KeepaliveTimeout", o.KeepaliveTimeout),
		optcheck.NotNegative("", "HandshakeTimeout", o.HandshakeTimeout),
		optcheck.NotNegative("", "DialTimeout", o.DialTimeout),
		optcheck.NotNegative("", "ReconnectBackoff", o.ReconnectBackoff),
		optcheck.NotNegative("", "MaxReconnectBackoff", o.MaxReconnectBackoff),
		optcheck.NotNegative("", "MaxHeaders", o.MaxHeaders),
		optcheck.AtMost("", "MaxHeaders", o.MaxHeaders, maxHeaders, "the most a request carries"),
		optcheck.NotNegative("", "MaxHeaderBytes", o.MaxHeaderBytes),
		optcheck.NotNegative("", "MaxCallsInFlight", o.MaxCallsInFlight),
	)
	if err != nil {
		return err
	}
	d := o.withDefaults()
	if d.KeepaliveTimeout <= d.KeepaliveInterval {
		err = errors.Join(err, optcheck.Errorf("", "KeepaliveTimeout %v%s does not exceed KeepaliveInterval %v%s",
			d.KeepaliveTimeout, defaultNote(o.KeepaliveTimeout), d.KeepaliveInterval, defaultNote(o.KeepaliveInterval)))
	}
	if d.MaxReconnectBackoff < d.ReconnectBackoff {
		err = errors.Join(err, optcheck.Errorf("", "MaxReconnectBackoff %v%s is below ReconnectBackoff %v%s",
			d.MaxReconnectBackoff, defaultNote(o.MaxReconnectBackoff), d.ReconnectBackoff, defaultNote(o.ReconnectBackoff)))
	}
	return err
}

// defaultNote marks, in an error, a value that the field's default stood in for.
func defaultNote(v time.Duration) string {
	if v == 0 {
		return " (the default)"
	}
	return ""
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.KeepaliveInterval, DefaultKeepaliveInterval)
	def(&o.KeepaliveTimeout, DefaultKeepaliveTimeout)
	def(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.ReconnectBackoff, DefaultReconnectBackoff)
	def(&o.MaxReconnectBackoff, DefaultMaxReconnectBackoff)
	if o.MaxHeaders == 0 {
		o.MaxHeaders = DefaultMaxHeaders
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxCallsInFlight == 0 {
		o.MaxCallsInFlight = DefaultMaxCallsInFlight
	}
	return o
}

// Builder assembles a Messenger. Its methods return the builder so that
// calls chain; Build starts the messenger.
type Builder struct {
	transports []transport.Transport
	disc       discovery.PeerDiscovery
	log        *slog.Logger
	opts       Options
	eventOpts  eventOptions
	id         peer.ID
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
		shutdownDone: make(chan struct{}),
		oneWayLog:    lograte.New(logBurst, logEvery),
		busyLog:      lograte.New(logBurst, logEvery),
		peerLog:      lograte.New(logBurst, logEvery),
	}
	m.handlerCtx, m.stopHandlers = context.WithCancel(context.Background())
	m.runCtx, m.cancelRun = context.WithCancel(context.Background())
	empty := map[string]*handlerEntry{}
	m.handlers.Store(&empty)
	m.info = peer.Info{ID: id, Addresses: make(map[string]string)}

	fail := func(err error) (*Messenger, error) {
		for _, t := range transports {
			t.Close()
		}
		if m.self != nil {
			m.self.Close()
		}
		m.stopHandlers()
		m.cancelRun()
		if m.events != nil {
			m.events.Close()
		}
		return nil, err
	}
	m.events = events.NewManager(id, eventNetwork{m}, b.eventOpts.withLogger(log))
	if err := m.registerSystemHandlers(); err != nil {
		return fail(err)
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
	if m.disc != nil {
		reg, err := m.disc.Register(ctx, m.PeerInfo())
		if err != nil {
			return fail(fmt.Errorf("velo: discovery: %w", err))
		}
		m.reg = reg
	}
	m.wg.Add(1)
	go m.keepalive()
	m.log.Debug("velo: instance started", "addresses", m.PeerInfo().String())
	return m, nil
}

func (m *Messenger) registerSystemHandlers() error {
	return m.register(UnaryHandler(system.ListHandlers, func(context.Context, *Context) ([]byte, error) {
		return system.EncodeNames(m.handlerNames())
	}).Inline().Build())
}
