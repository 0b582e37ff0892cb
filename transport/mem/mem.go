// Package mem is an in-memory transport: connections are synchronous
// in-process pipes, so tests of handlers need no sockets. Instances that
// should reach each other share one Network.
//
//	net := mem.NewNetwork()
//	a, _ := velo.NewBuilder().AddTransport(mem.New(net)).Build(ctx)
//	b, _ := velo.NewBuilder().AddTransport(mem.New(net)).Build(ctx)
package mem

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "mem"

// Network is a namespace of in-memory listeners.
type Network struct {
	next      atomic.Uint64
	mu        sync.Mutex
	listeners map[string]*Transport // guarded by mu
}

// NewNetwork returns an empty network.
func NewNetwork() *Network { return &Network{listeners: make(map[string]*Transport)} }

// Transport is an in-memory transport attached to a Network.
type Transport struct {
	net   *Network
	group *stream.Group

	mu   sync.Mutex
	addr string           // guarded by mu
	bind transport.Binder // guarded by mu
}

var _ transport.Transport = (*Transport)(nil)

// Options configure the transport. The zero value means defaults.
type Options struct {
	// MaxFrame is the largest frame accepted, in bytes. Zero: 16 MiB.
	MaxFrame int
}

// New returns a transport on n.
func New(n *Network, opts ...Options) *Transport {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return &Transport{net: n, group: stream.NewGroup(stream.Options{MaxFrame: o.MaxFrame, ReadBuffer: 4 << 10})}
}

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int {
	if m := t.group.MaxFrame(); m > 0 {
		return m
	}
	return wire.DefaultMaxFrame
}

// Listen implements transport.Transport.
func (t *Transport) Listen(_ context.Context, bind transport.Binder) (string, error) {
	addr := fmt.Sprintf("mem-%d", t.net.next.Add(1))
	t.mu.Lock()
	t.addr, t.bind = addr, bind
	t.mu.Unlock()
	t.net.mu.Lock()
	t.net.listeners[addr] = t
	t.net.mu.Unlock()
	return addr, nil
}

// Dial implements transport.Transport.
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	t.net.mu.Lock()
	dst := t.net.listeners[addr]
	t.net.mu.Unlock()
	if dst == nil {
		return nil, fmt.Errorf("mem: dial %s: connection refused", addr)
	}
	dst.mu.Lock()
	dbind := dst.bind
	dst.mu.Unlock()
	a, b := net.Pipe()
	if _, err := dst.group.Serve(b, dbind); err != nil {
		a.Close()
		return nil, fmt.Errorf("mem: dial %s: %w", addr, err)
	}
	c, err := t.group.Serve(a, bind)
	if err != nil {
		b.Close()
		return nil, err
	}
	return c, nil
}

// Close implements transport.Transport.
func (t *Transport) Close() error {
	t.mu.Lock()
	addr := t.addr
	t.mu.Unlock()
	t.net.mu.Lock()
	if t.net.listeners[addr] == t {
		delete(t.net.listeners, addr)
	}
	t.net.mu.Unlock()
	return t.group.Close()
}
