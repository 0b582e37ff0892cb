// Package nats carries velo frames over NATS core (nats.go), for
// deployments where instances already share a NATS system and should not
// open ports to each other.
//
// Each transport subscribes to a subject of its own, "velo.in.<random>"
// by default, which is its address. Connections are virtual: a Dial sends
// an open request to the peer's subject, and from then on each frame is
// one NATS message to the other side's subject, tagged with the
// receiver's connection id and a sequence number (proto.go). Credit-based
// flow control gives backpressure per connection, as TCP does; a lost
// message (NATS is at most once) is noticed by its sequence number and
// closes the connection instead of going unnoticed.
//
// Both sides must reach the same NATS system. A frame must fit a NATS
// message: MaxFrame is the server's max_payload less the 17-byte message
// header, or less when Options.MaxFrame says so.
//
// When the NATS connection drops, every virtual connection is closed at
// once (their calls fail with velo's ErrPeerLost) while nats.go
// reconnects; the messenger opens new connections on the next call.
package nats

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "nats"

// Defaults applied to the zero fields of Options, and to the NATS
// connection before Options.NATSOptions.
const (
	// DefaultURL is the NATS server connected to: nats.DefaultURL.
	DefaultURL = nats.DefaultURL
	// DefaultPrefix starts the subject of every transport.
	DefaultPrefix = "velo.in"
	// DefaultDialTimeout bounds one connection attempt (the open
	// request) and the initial connection to NATS.
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxFrame is the largest frame accepted, in bytes: 16 MiB.
	DefaultMaxFrame = wire.DefaultMaxFrame
	// DefaultWindow is how many bytes a peer may send on one connection
	// before this side has handled them: 4 MiB.
	DefaultWindow = 4 << 20
	// DefaultMaxConns bounds the accepted connections open at once.
	DefaultMaxConns = 4096
	// DefaultReconnectWait is the pause between two attempts to reconnect
	// to NATS; velo tries for ever.
	DefaultReconnectWait = 250 * time.Millisecond
)

// MaxWindow is the largest Window, 2 GiB less a byte: a window travels in
// a 32-bit field of the open and accept messages, and a sender may
// overdraw it by one frame.
const MaxWindow = 1<<31 - 1

// Options configure the transport. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// URL is the NATS server (or comma-separated servers) to connect to.
	// Empty: DefaultURL ("nats://127.0.0.1:4222").
	URL string
	// Prefix starts the transport's subject; a random token completes it.
	// Empty: DefaultPrefix ("velo.in").
	Prefix string
	// NATSOptions are applied to the NATS connection after velo's
	// defaults (name "velo", reconnecting for ever every
	// DefaultReconnectWait), so they may override them: credentials, TLS,
	// reconnect policy. Handlers set here (disconnect, closed, async
	// error) are called after velo's own.
	NATSOptions []nats.Option
	// DialTimeout bounds one connection attempt (the open request), and
	// the initial connection to NATS. Zero: DefaultDialTimeout (5 s).
	DialTimeout time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB). The effective limit is the smaller of
	// this and what a message of the NATS server may hold (max_payload
	// less 17 bytes).
	MaxFrame int
	// Window is how many bytes a peer may send on one connection before
	// this side has handled them, at most MaxWindow. Zero: DefaultWindow
	// (4 MiB). A window smaller than twice the effective MaxFrame is
	// raised to that, so that a frame never waits for a window message.
	Window int
	// MaxConns bounds the accepted connections open at once; further
	// opens are refused. Zero: DefaultMaxConns (4096).
	MaxConns int
	// Logger receives debug messages about refused or malformed input.
	// Nil: nothing is logged.
	Logger *slog.Logger
	// TLS, when set, secures the connection to the NATS server with this
	// config (the server's certificate verified against RootCAs,
	// Certificates presented if it asks for a client certificate);
	// ServerName, when empty, is the host of the URL. MinVersion below
	// TLS 1.2 is refused. It protects the hop to the NATS server, not
	// from one velo instance to another: over NATS a peer has no identity
	// (Context.Identity is ""), and the NATS server's own authorization
	// (users, subject permissions) decides who may publish to whom. See
	// docs/security.md.
	TLS *tls.Config
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: nats: negative Window -1").
func (o Options) Validate() error {
	return errors.Join(
		optcheck.NotNegative(Name, "DialTimeout", o.DialTimeout),
		optcheck.NotNegative(Name, "MaxFrame", o.MaxFrame),
		optcheck.NotNegative(Name, "Window", o.Window),
		transport.CheckTLS(Name, o.TLS),
		optcheck.AtMost(Name, "Window", o.Window, MaxWindow, "the largest a window message carries"),
		optcheck.NotNegative(Name, "MaxConns", o.MaxConns),
	)
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	return o
}

// Transport is the NATS transport.
type Transport struct {
	opts   Options
	optErr error // Options.Validate's; Listen and Dial return it
	log    *slog.Logger

	mu       sync.RWMutex
	nc       *nats.Conn         // guarded by mu
	sub      *nats.Subscription // guarded by mu
	subject  string             // guarded by mu
	bind     transport.Binder   // guarded by mu
	conns    map[uint64]*conn   // guarded by mu
	accepted int                // guarded by mu: accepted connections open
	nextID   uint64             // guarded by mu
	closed   bool               // guarded by mu
	wg       sync.WaitGroup     // the connections' goroutines; Add only under mu while !closed
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
)

// New returns a NATS transport. Nothing is opened until Listen. Invalid
// options are reported by Validate (the messenger's Build calls it), and
// by Listen and Dial.
func New(opts Options) *Transport {
	err := opts.Validate()
	if err != nil {
		opts = Options{Logger: opts.Logger} // never listens nor dials
	}
	opts = opts.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Transport{opts: opts, optErr: err, log: log.With("transport", Name), conns: make(map[uint64]*conn)}
}

// Validate implements transport.Validator: the error of Options.Validate.
func (t *Transport) Validate() error { return t.optErr }

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport: the configured limit, lowered
// to what one message of the connected NATS server holds.
func (t *Transport) MaxFrame() int {
	t.mu.RLock()
	nc := t.nc
	t.mu.RUnlock()
	m := t.opts.MaxFrame
	if nc != nil {
		if p := int(nc.MaxPayload()) - dataHeaderLen; p > 0 && p < m {
			m = p
		}
	}
	return m
}

// Subject is the transport's address, empty before Listen.
func (t *Transport) Subject() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.subject
}

// Listen implements transport.Transport: it connects to NATS and
// subscribes to the transport's subject.
func (t *Transport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	if t.optErr != nil {
		return "", t.optErr
	}
	o := nats.GetDefaultOptions()
	o.Url = t.opts.URL
	o.Name = "velo"
	o.MaxReconnect = -1
	o.ReconnectWait = DefaultReconnectWait
	o.Timeout = t.opts.DialTimeout
	if t.opts.TLS != nil {
		o.Secure = true
		o.TLSConfig = transport.WithTLSDefaults(t.opts.TLS)
	}
	for _, opt := range t.opts.NATSOptions {
		if err := opt(&o); err != nil {
			return "", fmt.Errorf("nats: option: %w", err)
		}
	}
	userDisc, userClosed, userAsync := o.DisconnectedErrCB, o.ClosedCB, o.AsyncErrorCB
	o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		t.dropAll(fmt.Errorf("nats: disconnected from the server: %v", err))
		if userDisc != nil {
			userDisc(nc, err)
		}
	}
	o.ClosedCB = func(nc *nats.Conn) {
		t.dropAll(errors.New("nats: connection closed"))
		if userClosed != nil {
			userClosed(nc)
		}
	}
	o.AsyncErrorCB = func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) && sub != nil && sub == t.subscription() {
			// Messages were dropped; any connection may have lost one.
			t.dropAll(fmt.Errorf("nats: %w", err))
		}
		if userAsync != nil {
			userAsync(nc, sub, err)
		}
	}
	nc, err := o.Connect()
	if err != nil {
		return "", fmt.Errorf("nats: connect to %s: %w", t.opts.URL, err)
	}
	var r [16]byte
	rand.Read(r[:])
	subject := t.opts.Prefix + "." + hex.EncodeToString(r[:])

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		nc.Close()
		return "", transport.ErrClosed
	}
	t.nc, t.subject, t.bind = nc, subject, bind
	t.mu.Unlock()
	sub, err := nc.Subscribe(subject, t.onMsg)
	if err == nil {
		t.mu.Lock()
		t.sub = sub
		t.mu.Unlock()
		// Make sure the server knows the subscription before peers learn
		// the address.
		fctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
		err = nc.FlushWithContext(fctx) // nats wants a deadline
		cancel()
	}
	if err != nil {
		nc.Close()
		return "", fmt.Errorf("nats: subscribe to %s: %w", subject, err)
	}
	return subject, nil
}

func (t *Transport) subscription() *nats.Subscription {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.sub
}

// Dial implements transport.Transport: it sends an open request to the
// peer's subject. Nobody subscribed there fails at once (NATS answers "no
// responders").
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	if t.optErr != nil {
		return nil, t.optErr
	}
	maxFrame := t.MaxFrame()
	window := windowSize(t.opts.Window, maxFrame)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	nc, subject := t.nc, t.subject
	if nc == nil {
		t.mu.Unlock()
		return nil, errors.New("nats: Dial before Listen")
	}
	t.nextID++
	c := newConn(t, t.nextID, addr, window, maxFrame)
	t.conns[c.localID] = c
	t.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	defer cancel()
	reply, err := nc.RequestWithContext(dctx, addr, appendOpen(nil, c.localID, uint32(c.window), subject))
	if err != nil {
		t.forget(c)
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("nats: dial %s: nobody listens there: %w", addr, err)
		}
		return nil, fmt.Errorf("nats: dial %s: %w", addr, err)
	}
	m := reply.Data
	switch {
	case len(m) > 0 && m[0] == kindRefuse:
		t.forget(c)
		return nil, fmt.Errorf("nats: dial %s: refused: %s", addr, clip(string(m[1:])))
	case len(m) == 0 || m[0] != kindAccept:
		t.forget(c)
		return nil, fmt.Errorf("nats: dial %s: unexpected answer to open", addr)
	}
	remoteID, credit, err := parseAccept(m)
	if err != nil {
		t.forget(c)
		return nil, fmt.Errorf("nats: dial %s: %w", addr, err)
	}
	if err := c.start(remoteID, int(credit), bind(c)); err != nil {
		return nil, err
	}
	return c, nil
}

// windowSize is the receive window of a new connection: the configured
// window (Validate bounds it by MaxWindow), but at least two of the
// largest frames, and never more than MaxWindow even then.
func windowSize(window, maxFrame int) int {
	return min(max(window, 2*maxFrame), MaxWindow)
}

// onMsg handles every message to the transport's subject, on the
// subscription's goroutine. Messages that name no open connection, or
// that do not parse, are dropped: they cannot be told apart from the
// leftovers of a connection that just closed.
func (t *Transport) onMsg(m *nats.Msg) {
	d := m.Data
	if len(d) == 0 {
		return
	}
	switch d[0] {
	case kindData:
		id, seq, frame, err := parseData(d)
		if c := t.lookup(id, err); c != nil {
			c.deliver(seq, frame)
		}
	case kindWindow:
		id, n, err := parseWindow(d)
		if c := t.lookup(id, err); c != nil {
			c.grant(n)
		}
	case kindClose:
		id, reason, err := parseClose(d)
		if c := t.lookup(id, err); c != nil {
			c.peerClosed(reason)
		}
	case kindOpen:
		t.accept(m)
	default:
		t.log.Debug("nats: message of unknown kind dropped", "kind", d[0])
	}
}

func (t *Transport) lookup(id uint64, err error) *conn {
	if err != nil {
		t.log.Debug("nats: malformed message dropped", "err", err)
		return nil
	}
	t.mu.RLock()
	c := t.conns[id]
	t.mu.RUnlock()
	return c
}

// accept answers an open request: it creates the connection, gives it
// its handler, and replies with its id.
func (t *Transport) accept(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	remoteID, credit, remote, err := parseOpen(m.Data)
	if err != nil {
		t.log.Debug("nats: malformed open refused", "err", err)
		m.Respond(appendRefuse(nil, err.Error()))
		return
	}
	maxFrame := t.MaxFrame()
	window := windowSize(t.opts.Window, maxFrame)
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		m.Respond(appendRefuse(nil, "shutting down"))
		return
	case t.accepted >= t.opts.MaxConns:
		t.mu.Unlock()
		m.Respond(appendRefuse(nil, "too many connections"))
		return
	}
	t.nextID++
	c := newConn(t, t.nextID, remote, window, maxFrame)
	c.accepted = true
	t.conns[c.localID] = c
	t.accepted++
	bind := t.bind
	t.mu.Unlock()
	if err := c.start(remoteID, int(credit), bind(c)); err != nil {
		m.Respond(appendRefuse(nil, err.Error()))
		return
	}
	var a [acceptLen]byte
	if err := m.Respond(appendAccept(a[:0], c.localID, uint32(c.window))); err != nil {
		c.Close(fmt.Errorf("nats: answering open: %w", err))
	}
}

// spawn starts the goroutine of c, unless the transport closed; then it
// closes c and calls its handler's Closed.
func (t *Transport) spawn(c *conn) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close(transport.ErrClosed)
		c.h.Closed(transport.ErrClosed)
		return transport.ErrClosed
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go c.run()
	return nil
}

// forget removes c from the table.
func (t *Transport) forget(c *conn) {
	t.mu.Lock()
	if t.conns[c.localID] == c {
		delete(t.conns, c.localID)
		if c.accepted {
			t.accepted--
		}
	}
	t.mu.Unlock()
}

// publish sends one message, or fails if the transport is not connected
// to NATS.
func (t *Transport) publish(subject string, data []byte) error {
	t.mu.RLock()
	nc := t.nc
	t.mu.RUnlock()
	if nc == nil {
		return transport.ErrClosed
	}
	return nc.Publish(subject, data)
}

// dropAll closes every connection with reason.
func (t *Transport) dropAll(reason error) {
	t.mu.RLock()
	conns := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.RUnlock()
	for _, c := range conns {
		c.Close(reason)
	}
}

// Close implements transport.Transport: it closes every connection
// (telling the peers), then the NATS connection, and waits for the
// connections' goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	already := t.closed
	t.closed = true
	nc, sub := t.nc, t.sub
	t.mu.Unlock()
	if !already {
		t.dropAll(transport.ErrClosed)
		if nc != nil {
			if sub != nil {
				sub.Unsubscribe()
			}
			// Wait until the server has the close messages and the
			// unsubscription: from then on, a peer that dials this
			// subject is told at once that nobody listens.
			nc.FlushTimeout(time.Second)
			nc.Close()
		}
	}
	t.wg.Wait()
	return nil
}
