// Package http carries velo frames over HTTP, for networks where only
// HTTP gets through (ingress controllers, API gateways, corporate
// proxies). It uses net/http only.
//
// A connection is one long-lived POST to the peer's endpoint
// (/velo/v1/conn by default): the request body carries the dialer's
// frames, the response body the listener's, both streamed and flushed
// frame by frame, exactly the byte stream that TCP carries
// (transport/stream), so framing, write coalescing and the frame size
// limit are the same. The listener accepts HTTP/1.1 (full duplex) and
// HTTP/2 without TLS (h2c, prior knowledge) on one port; the dialer
// speaks Options.Protocol.
//
// The address is the endpoint's URL, "http://127.0.0.1:8080/velo/v1/conn".
// Behind a reverse proxy, advertise the proxy's URL (Options.Advertise).
// The proxy must stream both bodies at once without buffering: HTTP/2 end
// to end, or HTTP/1.1 with full duplex and request and response buffering
// off (Go's httputil.ReverseProxy does with FlushInterval -1 when its
// handler enables full duplex; see docs/transports.md).
package http

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	nethttp "net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "http"

// DefaultPath is the URL path of the endpoint unless Options.Path says
// otherwise.
const DefaultPath = "/velo/v1/conn"

// ContentType marks velo's frame streams, in both directions; a response
// without it is not a velo endpoint.
const ContentType = "application/x-velo-frames"

// Protocol is the HTTP version a dialer speaks.
type Protocol int

const (
	// HTTP1 opens one HTTP/1.1 connection per velo connection, with a
	// chunked request body and a chunked response, both streaming.
	HTTP1 Protocol = iota
	// H2C speaks HTTP/2 without TLS, with prior knowledge: velo
	// connections to one listener share a TCP connection as HTTP/2
	// streams.
	H2C
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "HTTP/1.1"
	case H2C:
		return "h2c"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Defaults applied to the zero fields of Options (DefaultPath too).
const (
	// DefaultListen serves on loopback, on a port chosen by the system.
	DefaultListen = "127.0.0.1:0"
	// DefaultDialTimeout bounds one connection attempt, up to the
	// response headers.
	DefaultDialTimeout = 5 * time.Second
	// DefaultKeepAlive is the TCP keepalive period.
	DefaultKeepAlive = 15 * time.Second
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
	// Path is the endpoint's URL path; it starts with "/". Empty:
	// DefaultPath ("/velo/v1/conn").
	Path string
	// Advertise is the URL given to peers when it differs from the
	// listener's (a reverse proxy, NAT). Empty: "http://<listen
	// address><Path>".
	Advertise string
	// Protocol is what Dial speaks, HTTP1 or H2C. Zero: HTTP1. The
	// listener accepts both.
	Protocol Protocol
	// DialTimeout bounds one connection attempt, up to the response
	// headers. Zero: DefaultDialTimeout (5 s).
	DialTimeout time.Duration
	// KeepAlive is the TCP keepalive period. Zero: DefaultKeepAlive
	// (15 s); negative: off.
	KeepAlive time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB).
	MaxFrame int
	// MaxConns bounds the accepted velo connections open at once; further
	// requests are answered 503. Zero: DefaultMaxConns (4096).
	MaxConns int
	// ReadBuffer is the per-connection receive buffer, in bytes. Zero:
	// DefaultReadBuffer (64 KiB).
	ReadBuffer int
	// Logger receives the listener's failed accepts (too many open
	// files...), at Warn and at most one line a second, and net/http's
	// own error log (bad requests, broken connections) at Debug. Nil: the
	// messenger's logger.
	Logger *slog.Logger
	// TLS, when set, serves HTTPS (HTTP/1.1 or HTTP/2, as the dialer
	// offers) and dials https:// addresses with it; the one config
	// serves both roles, as tcp.Options.TLS describes (ServerName comes
	// from the URL). Protocol H2C does not apply over TLS: Dial offers
	// HTTP/2 and HTTP/1.1 and takes what the server picks. MinVersion
	// below TLS 1.2 is refused. The advertised URL is https://.
	TLS *tls.Config
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: http: negative MaxConns -1").
func (o Options) Validate() error {
	var path, proto error
	if o.Path != "" && !strings.HasPrefix(o.Path, "/") {
		path = optcheck.Errorf(Name, "Path %q does not start with /", o.Path)
	}
	if o.Protocol != HTTP1 && o.Protocol != H2C {
		proto = optcheck.Errorf(Name, "unknown Protocol %d", int(o.Protocol))
	}
	return errors.Join(
		path,
		proto,
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
	if o.Path == "" {
		o.Path = DefaultPath
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

// Transport is the HTTP transport.
type Transport struct {
	opts   Options
	optErr error // a bad option, reported by Listen and Dial
	group  *stream.Group
	rt     *nethttp.Transport
	client *nethttp.Client

	mu       sync.Mutex
	srv      *nethttp.Server   // guarded by mu
	closed   bool              // guarded by mu
	logs     transport.LogSlot // the messenger's logger, for a nil Options.Logger
	active   int               // guarded by mu: requests being served
	handlers sync.WaitGroup    // requests being served; Add only under mu while !closed
	serving  sync.WaitGroup    // the server's Serve loop
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
)

// New returns an HTTP transport. Nothing is opened until Listen. Invalid
// options are reported by Validate (the messenger's Build calls it), and
// by Listen and Dial.
func New(opts Options) *Transport {
	err := opts.Validate()
	if err != nil {
		opts = Options{Logger: opts.Logger} // never listens nor dials
	}
	opts = opts.withDefaults()
	d := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: opts.KeepAlive}
	rt := &nethttp.Transport{
		Proxy:              nil, // velo traffic goes where the address says, not via $HTTP_PROXY
		DialContext:        d.DialContext,
		DisableCompression: true,
		MaxIdleConns:       16,
		IdleConnTimeout:    30 * time.Second,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
	switch {
	case opts.TLS != nil:
		rt.TLSClientConfig = opts.TLS.Clone() // net/http adds to it: the server's is another copy
		rt.TLSHandshakeTimeout = opts.DialTimeout
		var p nethttp.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		rt.Protocols = &p
	case opts.Protocol == H2C:
		var p nethttp.Protocols
		p.SetUnencryptedHTTP2(true)
		rt.Protocols = &p
	}
	return &Transport{
		opts:   opts,
		optErr: err,
		group:  stream.NewGroup(stream.Options{MaxFrame: opts.MaxFrame, ReadBuffer: opts.ReadBuffer}),
		rt:     rt,
		client: &nethttp.Client{
			Transport: rt,
			// A redirect would drop the streaming body: refuse it.
			CheckRedirect: func(*nethttp.Request, []*nethttp.Request) error { return nethttp.ErrUseLastResponse },
		},
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
		return "", fmt.Errorf("http: listen on %s: %w", t.opts.Listen, err)
	}
	logger := t.logger()
	mux := nethttp.NewServeMux()
	mux.Handle(t.opts.Path, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		t.serve(w, r, bind)
	}))
	var protos nethttp.Protocols
	protos.SetHTTP1(true)
	if t.opts.TLS != nil {
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	srv := &nethttp.Server{
		Handler:           mux,
		Protocols:         &protos,
		ReadHeaderTimeout: t.opts.DialTimeout, // bounds the TLS handshake too
		IdleTimeout:       time.Minute,
		ErrorLog:          errorLog(logger),
		TLSConfig:         t.opts.TLS.Clone(), // nil stays nil
	}
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
		// net/http would retry some failed accepts itself, but sleeping
		// through Close and giving up on others: RetryAccept leaves it
		// none to see.
		if srv.TLSConfig != nil {
			srv.ServeTLS(stream.RetryAccept(ln, logger), "", "") // the config holds the certificates
		} else {
			srv.Serve(stream.RetryAccept(ln, logger)) // returns when Close closes the server
		}
	}()
	if t.opts.Advertise != "" {
		return t.opts.Advertise, nil
	}
	scheme := "http"
	if t.opts.TLS != nil {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: ln.Addr().String(), Path: t.opts.Path}).String(), nil
}

// errorLog is net/http's error log: l at Debug, nil for nowhere.
func errorLog(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}

// SetLogger implements transport.Logged: the transport logs to l when
// Options.Logger is nil.
func (t *Transport) SetLogger(l *slog.Logger) { t.logs.Set(l) }

// logger is where the transport logs: Options.Logger, else SetLogger's;
// nil for nowhere.
func (t *Transport) logger() *slog.Logger { return t.logs.For(t.opts.Logger, Name) }

// serve runs one accepted velo connection for as long as it lives: the
// handler must not return while the connection reads or writes the
// request and the response.
func (t *Transport) serve(w nethttp.ResponseWriter, r *nethttp.Request, bind transport.Binder) {
	if r.Method != nethttp.MethodPost {
		w.Header().Set("Allow", nethttp.MethodPost)
		refuse(w, "velo: POST a frame stream", nethttp.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Content-Type") != ContentType {
		refuse(w, "velo: want Content-Type "+ContentType, nethttp.StatusUnsupportedMediaType)
		return
	}
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		refuse(w, "velo: shutting down", nethttp.StatusServiceUnavailable)
		return
	case t.active >= t.opts.MaxConns:
		t.mu.Unlock()
		refuse(w, "velo: too many connections", nethttp.StatusServiceUnavailable)
		return
	}
	t.active++
	t.handlers.Add(1)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.active--
		t.mu.Unlock()
		t.handlers.Done()
	}()

	rc := nethttp.NewResponseController(w)
	if r.ProtoMajor == 1 {
		// HTTP/1.1 servers stop reading the request once the response has
		// begun, unless told otherwise.
		if err := rc.EnableFullDuplex(); err != nil {
			nethttp.Error(w, "velo: full duplex unavailable", nethttp.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the response
	w.WriteHeader(nethttp.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	sc := newServerConn(w, rc, r)
	if _, err := t.group.Serve(sc, bind); err != nil {
		return // Serve closed sc
	}
	sc.wait()
	sc.farewell()
}

// refuse answers a request that will not become a connection. The
// request body never ends, so the connection must close after the
// answer: otherwise an HTTP/1.1 server reads the body, to reuse the
// connection, before it sends the answer, and the dialer waits for both.
func refuse(w nethttp.ResponseWriter, msg string, code int) {
	w.Header().Set("Connection", "close")
	nethttp.Error(w, msg, code)
}

// Dial implements transport.Transport: it opens the POST and returns once
// the response headers arrived.
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
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http: address %q is not an http:// URL", addr)
	}
	// The request lives as long as the connection, not as long as ctx:
	// ctx (and the dial timeout) only bound the wait for the headers.
	life, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	req, err := nethttp.NewRequestWithContext(life, nethttp.MethodPost, u.String(), pr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("http: %w", err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", ContentType)
	dctx, dcancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	defer dcancel()
	// Closing the pipe matters as much as cancelling: net/http may wait
	// for the request body to end before it reports a failure (a server
	// that answered without reading the body and closed the connection).
	stop := context.AfterFunc(dctx, func() {
		cancel()
		pw.CloseWithError(net.ErrClosed)
	})
	resp, err := t.client.Do(req)
	if !stop() {
		// The dial's deadline or ctx ended first; cancel has run.
		if err == nil {
			resp.Body.Close()
		}
		pw.CloseWithError(net.ErrClosed)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("http: dial %s: no response within %v", addr, t.opts.DialTimeout)
	}
	if err != nil {
		cancel()
		pw.CloseWithError(net.ErrClosed)
		return nil, fmt.Errorf("http: %w", err)
	}
	if resp.StatusCode != nethttp.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		cancel()
		pw.CloseWithError(net.ErrClosed)
		return nil, fmt.Errorf("http: %s answered %s (%q), not a velo frame stream", addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	cc := &clientConn{pw: pw, body: resp.Body, cancel: cancel, remote: u.Host, tls: resp.TLS}
	c, err := t.group.Serve(cc, bind)
	if err != nil {
		return nil, err
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
	if srv != nil {
		srv.Close() // the listener and every HTTP connection; does not wait for handlers
	}
	t.group.Close()
	t.handlers.Wait()
	t.serving.Wait()
	t.rt.CloseIdleConnections()
	return nil
}

// errNoDeadlines is returned by the deadline methods of a dialed
// connection: its request and response bodies have none. Nothing in velo
// sets them; Close is how a connection is interrupted.
var errNoDeadlines = errors.New("http: a dialed connection has no deadlines")
