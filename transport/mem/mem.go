package mem

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "mem"

// Network is a namespace of in-memory listeners, and the faults between
// them (Drop, Delay, Partition). Its methods may be called concurrently.
type Network struct {
	next   atomic.Uint64
	faulty atomic.Bool // some fault is set: rules or cut is not empty

	mu        sync.Mutex
	listeners map[string]*Transport // guarded by mu
	rules     map[route]*rule       // guarded by mu: drops and delays
	cut       map[route]bool        // guarded by mu: partitions, both directions
	seed      uint64                // guarded by mu
	// changed is closed, and replaced, whenever the faults or the
	// listeners change: a dial waiting on a partition looks again.
	changed chan struct{} // guarded by mu
}

// NewNetwork returns an empty network without faults.
func NewNetwork() *Network {
	return &Network{
		listeners: make(map[string]*Transport),
		rules:     make(map[route]*rule),
		cut:       make(map[route]bool),
		seed:      rand.Uint64(), // Seed makes the draws repeatable
		changed:   make(chan struct{}),
	}
}

// Transport is an in-memory transport attached to a Network.
type Transport struct {
	net    *Network
	optErr error // Options.Validate's; Listen and Dial return it
	group  *stream.Group
	want   string // Options.Addr

	mu   sync.Mutex
	addr string           // guarded by mu
	bind transport.Binder // guarded by mu

	closeOnce sync.Once
	done      chan struct{} // closed by Close
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
	// Addr is the address Listen takes: the name by which peers dial
	// this transport, and by which the Network's faults name it. Listen
	// fails if another transport on the network has it. Empty: "mem-N",
	// N a new number.
	Addr string
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
	return &Transport{
		net:    n,
		optErr: err,
		group:  stream.NewGroup(stream.Options{MaxFrame: o.MaxFrame, ReadBuffer: readBuffer, CallerReads: true}),
		want:   o.Addr,
		done:   make(chan struct{}),
	}
}

// Validate implements transport.Validator: the error of Options.Validate.
func (t *Transport) Validate() error { return t.optErr }

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// Addr is the address the transport listens on; empty before Listen. A
// transport that dials without listening is named "" in faults.
func (t *Transport) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.group.MaxFrame() }

// Listen implements transport.Transport.
func (t *Transport) Listen(_ context.Context, bind transport.Binder) (string, error) {
	if t.optErr != nil {
		return "", t.optErr
	}
	addr := t.want
	t.net.mu.Lock()
	if addr == "" {
		addr = fmt.Sprintf("mem-%d", t.net.next.Add(1))
	}
	if _, taken := t.net.listeners[addr]; taken {
		t.net.mu.Unlock()
		return "", fmt.Errorf("mem: listen %s: address in use", addr)
	}
	t.net.listeners[addr] = t
	t.net.mu.Unlock()
	t.mu.Lock()
	t.addr, t.bind = addr, bind
	t.mu.Unlock()
	return addr, nil
}

// Dial implements transport.Transport. Across a partition it waits until
// the partition heals, ctx ends or the transport closes.
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	if t.optErr != nil {
		return nil, t.optErr
	}
	from := t.Addr()
	var dst *Transport
	for {
		t.net.mu.Lock()
		dst = t.net.listeners[addr]
		cut := t.net.cut[route{from, addr}]
		changed := t.net.changed
		t.net.mu.Unlock()
		if dst == nil {
			return nil, fmt.Errorf("mem: dial %s: connection refused", addr)
		}
		if !cut {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("mem: dial %s: partitioned from %s: %w", addr, from, ctx.Err())
		case <-t.done:
			return nil, transport.ErrClosed
		}
	}
	dst.mu.Lock()
	dbind := dst.bind
	dst.mu.Unlock()
	a, b := net.Pipe()
	if _, err := dst.group.Serve(newFaultConn(b, t.net, addr, from), dbind); err != nil {
		a.Close()
		return nil, fmt.Errorf("mem: dial %s: %w", addr, err)
	}
	c, err := t.group.Serve(newFaultConn(a, t.net, from, addr), bind)
	if err != nil {
		b.Close()
		return nil, err
	}
	return c, nil
}

// Close implements transport.Transport.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() { close(t.done) })
	t.mu.Lock()
	addr := t.addr
	t.mu.Unlock()
	t.net.mu.Lock()
	if t.net.listeners[addr] == t {
		delete(t.net.listeners, addr)
		t.net.changedLocked()
	}
	t.net.mu.Unlock()
	return t.group.Close()
}
