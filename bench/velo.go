package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	velogrpc "github.com/velo-messenger/velo/transport/grpc"
	velohttp "github.com/velo-messenger/velo/transport/http"
	velonats "github.com/velo-messenger/velo/transport/nats"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// The handlers of a velo server. Each call pattern has one, with the
// default options (Spawn: on a worker goroutine) unless its name says
// inline.
const (
	echoHandler       = "echo"        // Unary: returns its payload
	echoInlineHandler = "echo-inline" // the same, Inline
	typedHandler      = "typed"       // TypedUnary: returns its typedMsg
	ackHandler        = "ack"         // AM: does nothing (AMSync's target)
	sinkHandler       = "sink"        // AM: counts (AMSend's target)
	sinkInlineHandler = "sink-inline" // the same, Inline
	countHandler      = "count"       // Unary: the stream's barrier
	holdHandler       = "hold"        // Unary: blocks until released (-mode inflight)
	heldHandler       = "held"        // Unary, Inline: how many calls hold blocks
	releaseHandler    = "release"     // Unary, Inline: lets every blocked hold return
)

// holdMailbox is how many hold calls a server keeps pending at once: the
// most -mode inflight can ask for.
const holdMailbox = 1 << 18

// typedMsg is the value of a typed call: a few fields and the payload,
// encoded with MessagePack each way.
type typedMsg struct {
	ID   uint64
	Name string
	Data []byte
}

// echo returns the payload it was sent.
func echo(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }

// taggedTransports holds the constructors of the transports that files
// behind build tags add (ucx.go).
var taggedTransports = map[string]func(env) (transport.Transport, error){}

// newVeloTransport makes a transport of the named kind: h2c is the HTTP
// transport speaking HTTP/2 without TLS. The tcp, uds and ucx transports
// take e.maxFrame (-mode large).
func newVeloTransport(name string, e env) (transport.Transport, error) {
	if mk := taggedTransports[name]; mk != nil {
		return mk(e)
	}
	switch name {
	case "tcp":
		return tcp.New(tcp.Options{MaxFrame: e.maxFrame}), nil
	case tcpTLS:
		c, err := benchTLS()
		if err != nil {
			return nil, err
		}
		return tcp.New(tcp.Options{TLS: c}), nil
	case "uds":
		return uds.New(uds.Options{MaxFrame: e.maxFrame}), nil
	case "http":
		return velohttp.New(velohttp.Options{Protocol: velohttp.HTTP1}), nil
	case "h2c":
		return velohttp.New(velohttp.Options{Protocol: velohttp.H2C}), nil
	case "grpc":
		return velogrpc.New(velogrpc.Options{}), nil
	case "nats":
		if e.natsURL == "" {
			return nil, fmt.Errorf("velo over nats: no NATS server URL")
		}
		return velonats.New(velonats.Options{URL: e.natsURL}), nil
	}
	return nil, fmt.Errorf("unknown velo transport %q", name)
}

func newMessenger(ctx context.Context, transportName string, e env, o velo.Options) (*velo.Messenger, error) {
	t, err := newVeloTransport(transportName, e)
	if err != nil {
		return nil, err
	}
	return velo.NewBuilder().AddTransport(t).Options(o).Build(ctx)
}

func shutdown(m *velo.Messenger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Shutdown(ctx)
}

// serveVelo returns the server of a transport: a messenger with every
// handler the velo families call.
func serveVelo(transportName string) func(ctx context.Context, e env) (Server, error) {
	return func(ctx context.Context, e env) (Server, error) {
		m, err := newMessenger(ctx, transportName, e, velo.Options{})
		if err != nil {
			return nil, err
		}
		if err := registerVeloHandlers(m); err != nil {
			shutdown(m)
			return nil, err
		}
		addr, err := json.Marshal(m.PeerInfo())
		if err != nil {
			shutdown(m)
			return nil, err
		}
		return &veloServer{m: m, addr: string(addr)}, nil
	}
}

func registerVeloHandlers(m *velo.Messenger) error {
	sink := newTally()
	h := newHolder()
	count := func(ctx context.Context, c *velo.Context) ([]byte, error) {
		n, err := parseCount(c.Payload)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, barrierTimeout)
		defer cancel()
		if err := sink.wait(ctx, n); err != nil {
			return nil, err
		}
		return c.Payload, nil
	}
	echoer := velo.UnaryHandler(echoHandler, echo)
	if os.Getenv(noReuseEnv) == "" {
		echoer.ReusePayload() // echo keeps nothing: a large payload's memory serves the next one
	}
	handlers := []*velo.HandlerBuilder{
		echoer,
		velo.UnaryHandler(echoInlineHandler, echo).Inline(),
		velo.TypedUnaryHandler(typedHandler, func(_ context.Context, c *velo.TypedContext[typedMsg]) (typedMsg, error) {
			return c.Input, nil
		}),
		velo.AMHandler(ackHandler, func(context.Context, *velo.Context) error { return nil }),
		velo.AMHandler(sinkHandler, func(context.Context, *velo.Context) error { sink.add(); return nil }),
		velo.AMHandler(sinkInlineHandler, func(context.Context, *velo.Context) error { sink.add(); return nil }).Inline(),
		velo.UnaryHandler(countHandler, count),
		velo.UnaryHandler(holdHandler, h.hold).Mailbox(holdMailbox),
		velo.UnaryHandler(heldHandler, h.count).Inline(),
		velo.UnaryHandler(releaseHandler, h.release).Inline(),
	}
	handlers = append(handlers, streamToHandlerOf(m))
	for _, hb := range handlers {
		if err := m.RegisterHandler(hb.Build()); err != nil {
			return err
		}
	}
	return nil
}

// veloServer is a messenger serving the bench's handlers; its address is
// its peer.Info as JSON.
type veloServer struct {
	m    *velo.Messenger
	addr string
}

func (s *veloServer) Addr() string { return s.addr }
func (s *veloServer) Close() error { return shutdown(s.m) }

// holder keeps hold calls waiting until release: the server side of the
// in-flight measurement.
type holder struct {
	held atomic.Int64
	mu   sync.Mutex
	gate chan struct{} // guarded by mu: closed by release
}

func newHolder() *holder { return &holder{gate: make(chan struct{})} }

func (h *holder) hold(ctx context.Context, _ *velo.Context) ([]byte, error) {
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	h.held.Add(1)
	defer h.held.Add(-1)
	select {
	case <-gate:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *holder) count(context.Context, *velo.Context) ([]byte, error) {
	return appendCount(nil, int(h.held.Load())), nil
}

func (h *holder) release(context.Context, *velo.Context) ([]byte, error) {
	h.mu.Lock()
	close(h.gate)
	h.gate = make(chan struct{})
	h.mu.Unlock()
	return nil, nil
}

// veloConn is a client messenger that knows the server.
type veloConn struct {
	m      *velo.Messenger
	server peer.ID
}

// dialVeloConn starts a client messenger on the transport, registers the
// server whose peer.Info is addr, and makes one call, so that the
// connection and handshake are done and a broken server shows at once.
func dialVeloConn(ctx context.Context, transportName string, e env, addr string, o velo.Options) (*veloConn, error) {
	var info peer.Info
	if err := json.Unmarshal([]byte(addr), &info); err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	m, err := newMessenger(ctx, transportName, e, o)
	if err != nil {
		return nil, err
	}
	if err := m.RegisterPeer(info); err != nil {
		shutdown(m)
		return nil, err
	}
	if _, err := m.Unary(echoInlineHandler).Instance(info.ID).Send(ctx); err != nil {
		shutdown(m)
		return nil, fmt.Errorf("first call: %w", err)
	}
	return &veloConn{m: m, server: info.ID}, nil
}

func (c *veloConn) Close() error { return shutdown(c.m) }

// dialVelo returns the Dial of a velo system: one client messenger per
// system, wrapped by the family's client.
func dialVelo(transportName string, wrap func(*veloConn) Client) func(ctx context.Context, e env, addr string) (Client, error) {
	return func(ctx context.Context, e env, addr string) (Client, error) {
		c, err := dialVeloConn(ctx, transportName, e, addr, velo.Options{})
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	}
}

// The clients call the handlers the way an application would: a send
// builder chain per call.

type veloUnary struct {
	*veloConn
	handler string
}

func (c *veloUnary) RoundTrip(ctx context.Context, payload []byte) error {
	b, err := c.m.Unary(c.handler).RawPayload(payload).Instance(c.server).Send(ctx)
	if err != nil {
		return err
	}
	if len(b) != len(payload) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(b), len(payload))
	}
	return nil
}

type veloTyped struct{ *veloConn }

func (c *veloTyped) RoundTrip(ctx context.Context, payload []byte) error {
	in := typedMsg{ID: 42, Name: "velo-bench", Data: payload}
	out, err := velo.TypedUnary[typedMsg](c.m, typedHandler).Payload(in).Instance(c.server).Send(ctx)
	if err != nil {
		return err
	}
	if out.ID != in.ID || len(out.Data) != len(payload) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(out.Data), len(payload))
	}
	return nil
}

type veloAMSync struct{ *veloConn }

func (c *veloAMSync) RoundTrip(ctx context.Context, payload []byte) error {
	return c.m.AMSync(ackHandler).RawPayload(payload).Instance(c.server).Send(ctx)
}

type veloAMSend struct {
	*veloConn
	handler string
}

// Stream sends n messages with AMSend, then a unary call to the count
// barrier, which returns once the handler has run for all n.
func (c *veloAMSend) Stream(ctx context.Context, payload []byte, n int) error {
	for range n {
		if err := c.m.AMSend(c.handler).RawPayload(payload).Instance(c.server).Send(ctx); err != nil {
			return err
		}
	}
	b, err := c.m.Unary(countHandler).RawPayload(appendCount(nil, n)).Instance(c.server).Send(ctx)
	if err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	if got, err := parseCount(b); err != nil || got != int64(n) {
		return fmt.Errorf("barrier: server answered %q for %d messages", b, n)
	}
	return nil
}
