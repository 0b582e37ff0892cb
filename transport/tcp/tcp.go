// Package tcp is velo's default transport: one TCP connection per peer pair,
// used in both directions, with TCP_NODELAY, TCP keepalive and coalesced
// writes.
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/rawio"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "tcp"

// Defaults applied to the zero fields of Options.
const (
	// DefaultListen listens on loopback, on a port chosen by the system.
	DefaultListen = "127.0.0.1:0"
	// DefaultDialTimeout bounds one connection attempt.
	DefaultDialTimeout = 5 * time.Second
	// DefaultKeepAlive is the TCP keepalive period.
	DefaultKeepAlive = 15 * time.Second
	// DefaultMaxFrame is the largest frame accepted, in bytes: 16 MiB.
	DefaultMaxFrame = stream.DefaultMaxFrame
	// DefaultMaxConns bounds the accepted connections open at once.
	DefaultMaxConns = 4096
	// DefaultReadBuffer is the per-connection receive buffer, in bytes:
	// 64 KiB.
	DefaultReadBuffer = stream.DefaultReadBuffer
)

// Options configure the transport. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// Listen is the address to listen on. Empty: DefaultListen
	// ("127.0.0.1:0": loopback, a port chosen by the system). Use ":port"
	// or "0.0.0.0:port" to accept from other hosts.
	Listen string
	// Advertise is the address given to peers, when it differs from the
	// listening address (NAT, containers). Empty: the listener's address.
	Advertise string
	// DialTimeout bounds one connection attempt. Zero: DefaultDialTimeout
	// (5 s).
	DialTimeout time.Duration
	// KeepAlive is the TCP keepalive period. Zero: DefaultKeepAlive
	// (15 s); negative: off. velo's own keepalive pings detect dead peers
	// regardless.
	KeepAlive time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB).
	MaxFrame int
	// MaxConns bounds the accepted connections open at once; further ones
	// are closed at once. Zero: DefaultMaxConns (4096).
	MaxConns int
	// ReadBuffer is the per-connection receive buffer, in bytes. Zero:
	// DefaultReadBuffer (64 KiB).
	ReadBuffer int
	// Logger receives the listener's failed accepts (too many open
	// files...), at Warn and at most one line a second. Nil: the
	// messenger's logger.
	Logger *slog.Logger
	// TLS, when set, makes every connection TLS, both ways: the one
	// config serves accepted connections (Certificates or GetCertificate
	// or GetConfigForClient; ClientCAs and ClientAuth for mutual TLS) and
	// dialed ones (RootCAs to verify the peer, Certificates as the client
	// certificate; ServerName, when empty, is the host of the address
	// dialed). MinVersion below TLS 1.2 is refused; zero means TLS 1.2,
	// and TLS 1.3 is preferred whenever both ends have it. An accepted
	// connection does its handshake on its own goroutine, bounded with
	// the hello by the messenger's HandshakeTimeout; a dial does it
	// within DialTimeout. Every instance that dials this one needs TLS
	// too: plain and TLS instances do not talk. See docs/security.md.
	TLS *tls.Config
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: tcp: negative MaxConns -1").
func (o Options) Validate() error {
	return errors.Join(
		optcheck.NotNegative(Name, "DialTimeout", o.DialTimeout),
		optcheck.NotNegative(Name, "MaxFrame", o.MaxFrame),
		optcheck.NotNegative(Name, "MaxConns", o.MaxConns),
		optcheck.NotNegative(Name, "ReadBuffer", o.ReadBuffer),
		transport.CheckTLS(Name, o.TLS),
	)
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = DefaultReadBuffer
	}
	o.TLS = transport.WithTLSDefaults(o.TLS)
	return o
}

// Transport is the TCP transport.
type Transport struct {
	opts   Options
	optErr error // Options.Validate's; Listen and Dial return it
	group  *stream.Group

	mu   sync.Mutex
	ln   net.Listener      // guarded by mu
	logs transport.LogSlot // the messenger's logger, for a nil Options.Logger
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
)

// New returns a TCP transport. Nothing is opened until Listen. Invalid
// options are reported by Validate (the messenger's Build calls it), and
// by Listen and Dial.
func New(opts Options) *Transport {
	err := opts.Validate()
	if err != nil {
		opts = Options{Logger: opts.Logger} // never listens nor dials
	}
	opts = opts.withDefaults()
	return &Transport{
		opts:   opts,
		optErr: err,
		group:  stream.NewGroup(stream.Options{MaxFrame: opts.MaxFrame, ReadBuffer: opts.ReadBuffer, CallerReads: true}),
	}
}

// Validate implements transport.Validator: the error of Options.Validate.
func (t *Transport) Validate() error { return t.optErr }

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.group.MaxFrame() }

// Listen implements transport.Transport.
func (t *Transport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	if t.optErr != nil {
		return "", t.optErr
	}
	lc := net.ListenConfig{KeepAlive: t.opts.KeepAlive}
	ln, err := lc.Listen(ctx, "tcp", t.opts.Listen)
	if err != nil {
		return "", fmt.Errorf("tcp: listen on %s: %w", t.opts.Listen, err)
	}
	t.mu.Lock()
	t.ln = ln
	t.mu.Unlock()
	if err := t.group.Accept(tcpListener{ln.(*net.TCPListener), t.opts.TLS}, bind, t.opts.MaxConns, t.logger()); err != nil {
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
	if t.optErr != nil {
		return nil, t.optErr
	}
	d := net.Dialer{Timeout: t.opts.DialTimeout, KeepAlive: t.opts.KeepAlive}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tune(nc)
	if t.opts.TLS != nil {
		if nc, err = transport.ClientTLS(ctx, rawio.Wrap(nc), t.opts.TLS, addr); err != nil {
			return nil, fmt.Errorf("tcp: %w", err)
		}
	}
	c, err := t.group.Serve(nc, bind)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close implements transport.Transport.
func (t *Transport) Close() error { return t.group.Close() }

// tcpListener sets TCP_NODELAY on accepted connections (Go sets it by
// default today; setting it here keeps the latency contract explicit),
// and wraps them in TLS when the transport has a config: the handshake
// happens on the connection's first read, on its own goroutine, never in
// the accept loop.
type tcpListener struct {
	*net.TCPListener
	tls *tls.Config
}

func (l tcpListener) Accept() (net.Conn, error) {
	nc, err := l.TCPListener.Accept()
	if err != nil {
		return nil, err
	}
	tune(nc)
	if l.tls != nil {
		// TLS reads and writes through the raw system calls too.
		return tls.Server(rawio.Wrap(nc), l.tls), nil
	}
	return nc, nil
}

func tune(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		limitUnsent(tc)
	}
}
