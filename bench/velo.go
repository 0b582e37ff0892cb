package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// echoHandler is the name of the handler every velo server registers.
const echoHandler = "echo"

// veloSystem is a velo unary call over TCP to a handler that returns its
// payload: the server is a messenger with that handler, the client a
// messenger that calls it with a raw payload.
type veloSystem struct {
	name   string
	inline bool // register the handler with .Inline() instead of the default Spawn
}

func (s veloSystem) Name() string { return s.name }

// echo returns the payload it was sent.
func echo(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }

// Serve implements System.
func (s veloSystem) Serve(ctx context.Context) (Server, error) {
	m, err := newTCPMessenger(ctx)
	if err != nil {
		return nil, err
	}
	h := velo.UnaryHandler(echoHandler, echo)
	if s.inline {
		h = h.Inline()
	}
	if err := m.RegisterHandler(h.Build()); err != nil {
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

// veloServer is a messenger serving the echo handler; its address is its
// peer.Info as JSON.
type veloServer struct {
	m    *velo.Messenger
	addr string
}

func (s *veloServer) Addr() string { return s.addr }
func (s *veloServer) Close() error { return shutdown(s.m) }

// Dial implements System. It makes one call before returning, so that the
// connection and handshake are done and a broken server shows at once.
func (s veloSystem) Dial(ctx context.Context, addr string, payload []byte) (Client, error) {
	var info peer.Info
	if err := json.Unmarshal([]byte(addr), &info); err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	m, err := newTCPMessenger(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.RegisterPeer(info); err != nil {
		shutdown(m)
		return nil, err
	}
	c := &veloClient{m: m, server: info.ID, payload: payload}
	if err := c.RoundTrip(ctx); err != nil {
		shutdown(m)
		return nil, fmt.Errorf("first call: %w", err)
	}
	return c, nil
}

// veloClient calls the echo handler the way an application would: a send
// builder chain per call.
type veloClient struct {
	m       *velo.Messenger
	server  peer.ID
	payload []byte
}

func (c *veloClient) RoundTrip(ctx context.Context) error {
	b, err := c.m.Unary(echoHandler).RawPayload(c.payload).Instance(c.server).Send(ctx)
	if err != nil {
		return err
	}
	if len(b) != len(c.payload) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(b), len(c.payload))
	}
	return nil
}

func (c *veloClient) Close() error { return shutdown(c.m) }

// newTCPMessenger starts a messenger on TCP loopback, a port chosen by the
// system.
func newTCPMessenger(ctx context.Context) (*velo.Messenger, error) {
	return velo.NewBuilder().AddTransport(tcp.New(tcp.Options{})).Build(ctx)
}

func shutdown(m *velo.Messenger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Shutdown(ctx)
}
