// Package tcp is velo's default transport: one TCP connection per peer pair,
// used in both directions, with TCP_NODELAY, TCP keepalive and coalesced
// writes.
package tcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "tcp"

// Options configure the transport. The zero value means defaults.
type Options struct {
	// Listen is the address to listen on. Empty: "127.0.0.1:0" (loopback,
	// a port chosen by the system). Use ":port" or "0.0.0.0:port" to accept
	// from other hosts.
	Listen string
	// Advertise is the address given to peers, when it differs from the
	// listening address (NAT, containers). Empty: the listener's address.
	Advertise string
	// DialTimeout bounds one connection attempt. Zero: 5 s.
	DialTimeout time.Duration
	// KeepAlive is the TCP keepalive period. Zero: 15 s; negative: off.
	// velo's own keepalive pings detect dead peers regardless.
	KeepAlive time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero: 16 MiB.
	MaxFrame int
	// MaxConns bounds the accepted connections open at once; further ones
	// are closed at once. Zero: 4096.
	MaxConns int
	// ReadBuffer is the per-connection receive buffer, in bytes. Zero: 64 KiB.
	ReadBuffer int
	// Logger receives the listener's failed accepts (too many open
	// files...), at Warn and at most one line a second. Nil: the
	// messenger's logger.
	Logger *slog.Logger
}

// Transport is the TCP transport.
type Transport struct {
	opts  Options
	group *stream.Group

	mu   sync.Mutex
	ln   net.Listener      // guarded by mu
	logs transport.LogSlot // the messenger's logger, for a nil Options.Logger
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
)

// New returns a TCP transport. Nothing is opened until Listen.
func New(opts Options) *Transport {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4096
	}
	return &Transport{
		opts:  opts,
		group: stream.NewGroup(stream.Options{MaxFrame: opts.MaxFrame, ReadBuffer: opts.ReadBuffer}),
	}
}

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.group.MaxFrame() }

// Listen implements transport.Transport.
func (t *Transport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	lc := net.ListenConfig{KeepAlive: t.opts.KeepAlive}
	ln, err := lc.Listen(ctx, "tcp", t.opts.Listen)
	if err != nil {
		return "", fmt.Errorf("tcp: listen on %s: %w", t.opts.Listen, err)
	}
	t.mu.Lock()
	t.ln = ln
	t.mu.Unlock()
	if err := t.group.Accept(tcpListener{ln.(*net.TCPListener)}, bind, t.opts.MaxConns, t.logger()); err != nil {
		return "", err
	}
	if t.opts.Advertise != "" {
		return t.opts.Advertise, nil
	}
	return ln.Addr().String(), nil
}

// SetLogger implements transport.Logged: the transport logs to l when
// Options.Logger is nil.
func (t *Transport) SetLogger(l *slog.Logger) { t.logs.Set(l) }

// logger is where the transport logs: Options.Logger, else SetLogger's;
// nil for nowhere.
func (t *Transport) logger() *slog.Logger { return t.logs.For(t.opts.Logger, Name) }

// Dial implements transport.Transport.
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	d := net.Dialer{Timeout: t.opts.DialTimeout, KeepAlive: t.opts.KeepAlive}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tune(nc)
	c, err := t.group.Serve(nc, bind)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close implements transport.Transport.
func (t *Transport) Close() error { return t.group.Close() }

// tcpListener sets TCP_NODELAY on accepted connections. Go sets it by
// default today; setting it here keeps the latency contract explicit.
type tcpListener struct{ *net.TCPListener }

func (l tcpListener) Accept() (net.Conn, error) {
	nc, err := l.TCPListener.Accept()
	if err != nil {
		return nil, err
	}
	tune(nc)
	return nc, nil
}

func tune(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}
