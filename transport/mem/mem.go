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

	"github.com/velo-messenger/velo/internal/optcheck"
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
	net    *Network
	optErr error // Options.Validate's; Listen and Dial return it
	group  *stream.Group

	mu   sync.Mutex
	addr string           // guarded by mu
	bind transport.Binder // guarded by mu
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
)

// DefaultMaxFrame is the largest frame accepted unless Options.MaxFrame
// says otherwise, in bytes: 16 MiB.
const DefaultMaxFrame = stream.DefaultMaxFrame

// readBuffer is each connection's receive buffer: the pipes carry what
// the writer hands them, so a small one does.
const readBuffer = 4 << 10

// Options configure the transport. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB).
	MaxFrame int
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: mem: negative MaxFrame -1").
func (o Options) Validate() error {
	return optcheck.NotNegative(Name, "MaxFrame", o.MaxFrame)
}

// New returns a transport on n, with the first of opts if any. Invalid
// options are reported by Validate (the messenger's Build calls it), and
// by Listen and Dial.
func New(n *Network, opts ...Options) *Transport {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	err := o.Validate()
	if err != nil {
		o = Options{} // never listens nor dials
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	return &Transport{net: n, optErr: err, group: stream.NewGroup(stream.Options{MaxFrame: o.MaxFrame, ReadBuffer: readBuffer})}
}

// Validate implements transport.Validator: the error of Options.Validate.
func (t *Transport) Validate() error { return t.optErr }

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.group.MaxFrame() }

// Listen implements transport.Transport.
func (t *Transport) Listen(_ context.Context, bind transport.Binder) (string, error) {
	if t.optErr != nil {
		return "", t.optErr
	}
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
	if t.optErr != nil {
		return nil, t.optErr
	}
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
