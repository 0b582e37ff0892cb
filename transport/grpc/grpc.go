// Package grpc carries velo frames over gRPC (grpc-go), for deployments
// whose network speaks gRPC: service meshes, gRPC-aware load balancers,
// mTLS set up through gRPC credentials.
//
// A velo connection is one bidirectional stream of the Connect method of
// service velo.transport.v1.Velo (velo.proto). Each message carries the
// next bytes of velo's frame stream (whole frames, coalesced frames, or a
// piece of a large one), so framing, write coalescing and the frame size
// limit are those of TCP (transport/stream). Messages are at most
// MaxFrame plus the 4-byte length prefix, which is what the server and the
// client set as gRPC's receive and send limits.
//
// The address is a host:port. Each Dial opens a gRPC client connection of
// its own, closed with the velo connection.
package grpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/grpc/internal/velopb"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "grpc"

// headerKey is the response header by which a velo listener identifies
// itself, before any frame.
const headerKey = "velo-transport"

// Defaults applied to the zero fields of Options.
const (
	// DefaultListen serves on loopback, on a port chosen by the system.
	DefaultListen = "127.0.0.1:0"
	// DefaultDialTimeout bounds one connection attempt, up to the
	// listener's response headers.
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxFrame is the largest frame accepted, in bytes: 16 MiB.
	DefaultMaxFrame = stream.DefaultMaxFrame
	// DefaultMaxConns bounds the accepted velo connections open at once.
	DefaultMaxConns = 4096
	// DefaultReadBuffer is the per-connection receive buffer, in bytes:
	// 64 KiB.
	DefaultReadBuffer = stream.DefaultReadBuffer
)

// Options configure the transport. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// Listen is the TCP address to serve on. Empty: DefaultListen
	// ("127.0.0.1:0": loopback, a port chosen by the system).
	Listen string
	// Advertise is the address given to peers when it differs from the
	// listener's. Empty: the listener's address.
	Advertise string
	// DialTimeout bounds one connection attempt, up to the listener's
	// response headers. Zero: DefaultDialTimeout (5 s).
	DialTimeout time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB). It also sets gRPC's message size limits,
	// in both directions.
	MaxFrame int
	// MaxConns bounds the accepted velo connections open at once; further
	// streams are refused with ResourceExhausted. Zero: DefaultMaxConns
	// (4096).
	MaxConns int
	// ReadBuffer is the per-connection receive buffer, in bytes. Zero:
	// DefaultReadBuffer (64 KiB).
	ReadBuffer int
	// ServerOptions are added to the gRPC server's (credentials, keepalive
	// policy, interceptors...). Message size options are overridden.
	ServerOptions []grpc.ServerOption
	// DialOptions are added to each client connection's. Without
	// credentials among them (or TLS), connections are plaintext.
	DialOptions []grpc.DialOption
	// TLS, when set, gives the server and every client connection gRPC's
	// TLS transport credentials with this config, both roles in one, as
	// tcp.Options.TLS describes (ServerName, when empty, is the host of
	// the address dialed); the handshake of an accepted connection is
	// bounded by DialTimeout. MinVersion below TLS 1.2 is refused.
	TLS *tls.Config
	// Logger receives the listener's failed accepts (too many open
	// files...), at Warn and at most one line a second. Nil: the
	// messenger's logger. gRPC's own log goes to grpclog, as ever.
	Logger *slog.Logger
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: grpc: negative MaxConns -1").
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

// Transport is the gRPC transport.
type Transport struct {
	opts     Options
	optErr   error // Options.Validate's; Listen and Dial return it
	group    *stream.Group
	maxChunk int // largest message: a whole frame with its prefix

	mu      sync.Mutex
	srv     *grpc.Server      // guarded by mu
	closed  bool              // guarded by mu
	logs    transport.LogSlot // the messenger's logger, for a nil Options.Logger
	active  int               // guarded by mu: accepted streams open
	serving sync.WaitGroup
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
)

// New returns a gRPC transport. Nothing is opened until Listen. Invalid
// options are reported by Validate (the messenger's Build calls it), and
// by Listen and Dial.
func New(opts Options) *Transport {
	err := opts.Validate()
	if err != nil {
		opts = Options{Logger: opts.Logger} // never listens nor dials
	}
	opts = opts.withDefaults()
	g := stream.NewGroup(stream.Options{MaxFrame: opts.MaxFrame, ReadBuffer: opts.ReadBuffer})
	return &Transport{opts: opts, optErr: err, group: g, maxChunk: g.MaxFrame() + wire.PrefixLen}
}

// Validate implements transport.Validator: the error of Options.Validate.
func (t *Transport) Validate() error { return t.optErr }

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.group.MaxFrame() }

// maxMsg is gRPC's message limit: a chunk and its protobuf overhead (a
// tag and a length varint).
func (t *Transport) maxMsg() int { return t.maxChunk + 16 }

// Listen implements transport.Transport.
func (t *Transport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	if t.optErr != nil {
		return "", t.optErr
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", t.opts.Listen)
	if err != nil {
		return "", fmt.Errorf("grpc: listen on %s: %w", t.opts.Listen, err)
	}
	opts := append([]grpc.ServerOption{}, t.opts.ServerOptions...)
	if t.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(t.opts.TLS)))
	}
	opts = append(opts,
		grpc.ConnectionTimeout(t.opts.DialTimeout), // bounds an accepted connection's handshake
		grpc.MaxRecvMsgSize(t.maxMsg()),
		grpc.MaxSendMsgSize(t.maxMsg()),
		grpc.WaitForHandlers(true), // Stop returns once every Connect has
	)
	srv := grpc.NewServer(opts...)
	velopb.RegisterVeloServer(srv, &service{t: t, bind: bind})
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return "", transport.ErrClosed
	}
	t.srv = srv
	t.serving.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.serving.Done()
		// gRPC would retry some failed accepts itself, but give up on
		// others: RetryAccept leaves it none to see.
		srv.Serve(stream.RetryAccept(ln, t.logger())) // returns when Close stops the server
	}()
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

// service is the server side of velo.transport.v1.Velo.
type service struct {
	velopb.UnimplementedVeloServer
	t    *Transport
	bind transport.Binder
}

// Connect serves one accepted velo connection for as long as it lives.
func (s *service) Connect(st grpc.BidiStreamingServer[velopb.Chunk, velopb.Chunk]) error {
	t := s.t
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return status.Error(codes.Unavailable, "velo: shutting down")
	case t.active >= t.opts.MaxConns:
		t.mu.Unlock()
		return status.Error(codes.ResourceExhausted, "velo: too many connections")
	}
	t.active++
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.active--
		t.mu.Unlock()
	}()

	ctx := st.Context()
	if err := st.SendHeader(metadata.Pairs(headerKey, "1")); err != nil {
		return err
	}
	sc := newStreamConn(st, t.maxChunk, nil, localAddr(ctx), remoteAddr(ctx))
	sc.identity = tlsIdentity(ctx)
	c, err := t.group.Serve(sc, s.bind)
	if err != nil {
		return status.Error(codes.Unavailable, "velo: shutting down")
	}
	// Returning ends the stream: the peer's reads see its end at once.
	select {
	case <-c.Done():
	case <-ctx.Done():
		c.Close(fmt.Errorf("grpc: stream ended: %w", context.Cause(ctx)))
	}
	return nil
}

// Dial implements transport.Transport: it opens a client connection and a
// Connect stream, and returns once the listener's headers arrived.
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	if t.optErr != nil {
		return nil, t.optErr
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, transport.ErrClosed
	}
	creds := insecure.NewCredentials()
	if t.opts.TLS != nil {
		c := t.opts.TLS
		if c.ServerName == "" {
			c = c.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				c.ServerName = host
			}
		}
		creds = credentials.NewTLS(c)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	opts = append(opts, t.opts.DialOptions...)
	opts = append(opts, grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(t.maxMsg()),
		grpc.MaxCallSendMsgSize(t.maxMsg()),
	))
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc: %w", err)
	}
	// The stream lives as long as the connection: ctx and the dial
	// timeout only bound the wait for the headers.
	life, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	defer dcancel()
	stop := context.AfterFunc(dctx, cancel)
	st, err := velopb.NewVeloClient(cc).Connect(life)
	var md metadata.MD
	if err == nil {
		md, err = st.Header()
	}
	fail := func(err error) (transport.Conn, error) {
		cancel()
		cc.Close()
		return nil, err
	}
	if !stop() {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(fmt.Errorf("grpc: dial %s: no answer within %v", addr, t.opts.DialTimeout))
	}
	if err != nil {
		return fail(fmt.Errorf("grpc: dial %s: %w", addr, err))
	}
	if v := md.Get(headerKey); len(v) != 1 || v[0] != "1" {
		// A refusal (or a server without the service) ends the stream
		// with a status and no headers: report it.
		why := errors.New("not a velo listener")
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		stopRecv := context.AfterFunc(rctx, cancel)
		if err := st.RecvMsg(new(velopb.Chunk)); status.Code(err) != codes.OK && status.Code(err) != codes.Canceled {
			why = err
		}
		stopRecv()
		rcancel()
		return fail(fmt.Errorf("grpc: dial %s: %w", addr, why))
	}
	sc := newStreamConn(st, t.maxChunk, func() { cancel(); cc.Close() }, nil, strAddr(addr))
	sc.identity = tlsIdentity(st.Context())
	c, err := t.group.Serve(sc, bind)
	if err != nil {
		return nil, err // Serve closed sc
	}
	return c, nil
}

// Close implements transport.Transport: it stops the server, closes every
// connection, and waits until the handlers and loops have returned.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	srv := t.srv
	t.mu.Unlock()
	// Closing the connections first lets each Connect return on its own;
	// Stop then cuts what remains and waits for the handlers.
	t.group.Close()
	if srv != nil {
		srv.Stop()
	}
	t.serving.Wait()
	return nil
}

// errClosedStream is what reads and writes return after Close.
var errClosedStream = errors.New("grpc: stream closed")

// errNoDeadlines is returned by the deadline methods of a stream: gRPC
// streams have none. Nothing in velo sets them; Close is how a connection
// is interrupted.
var errNoDeadlines = errors.New("grpc: streams have no deadlines")
