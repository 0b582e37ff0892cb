package stream

import (
	"log/slog"
	"net"
	"sync"

	"github.com/velo-messenger/velo/transport"
)

// Group owns the connections and goroutines of one transport: the accept
// loop and each connection's receive loop. Close closes them all and waits.
type Group struct {
	opts   Options
	optErr error // Options.Validate's; Serve and Accept return it

	mu       sync.Mutex
	conns    map[*Conn]struct{} // guarded by mu
	accepted int                // guarded by mu: conns that Accept took
	lns      []net.Listener     // guarded by mu
	closed   bool               // guarded by mu
	wg       sync.WaitGroup
}

// NewGroup returns a Group whose connections use opts. Options that
// Validate rejects make every Serve and Accept fail with its error.
func NewGroup(opts Options) *Group {
	err := opts.Validate()
	if err != nil {
		opts = Options{} // never used for a connection
	}
	return &Group{opts: opts.withDefaults(), optErr: err, conns: make(map[*Conn]struct{})}
}

// MaxFrame is the largest frame the group's connections read.
func (g *Group) MaxFrame() int { return g.opts.MaxFrame }

// Serve adopts nc: it wraps it, asks bind for its Handler, and runs its
// receive loop on a goroutine of the group's. It fails with
// transport.ErrClosed after Close, and with the options' error when
// NewGroup's were invalid; either way nc is closed.
func (g *Group) Serve(nc net.Conn, bind transport.Binder) (*Conn, error) {
	return g.serve(nc, bind, false)
}

func (g *Group) serve(nc net.Conn, bind transport.Binder, accepted bool) (*Conn, error) {
	if g.optErr != nil {
		nc.Close()
		return nil, g.optErr
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		nc.Close()
		return nil, transport.ErrClosed
	}
	g.mu.Unlock()
	c := New(nc, bind, g.opts)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		c.Close(transport.ErrClosed)
		c.h.Closed(transport.ErrClosed)
		return nil, transport.ErrClosed
	}
	g.conns[c] = struct{}{}
	if accepted {
		g.accepted++
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		c.Serve()
		g.mu.Lock()
		delete(g.conns, c)
		if accepted {
			g.accepted--
		}
		g.mu.Unlock()
	}()
	return c, nil
}

// Accept runs an accept loop on ln until the group closes, serving each
// connection with bind. maxConns > 0 bounds the connections open at once;
// beyond it new connections are closed at once. A failed accept (too many
// open files...) does not end the loop: it is retried after a pause and
// logged to log (see RetryAccept; nil logs nothing).
func (g *Group) Accept(ln net.Listener, bind transport.Binder, maxConns int, log *slog.Logger) error {
	if g.optErr != nil {
		ln.Close()
		return g.optErr
	}
	ln = RetryAccept(ln, log)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		ln.Close()
		return transport.ErrClosed
	}
	g.lns = append(g.lns, ln)
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return // closed: RetryAccept retries every other error
			}
			if maxConns > 0 && g.acceptedCount() >= maxConns {
				nc.Close()
				continue
			}
			g.serve(nc, bind, true)
		}
	}()
	return nil
}

// acceptedCount is the number of open connections that Accept took (the
// connections this side dialed do not count against maxConns).
func (g *Group) acceptedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.accepted
}

// Close closes the listeners and every connection, then waits for the
// group's goroutines. It is idempotent.
func (g *Group) Close() error {
	g.mu.Lock()
	g.closed = true
	lns := g.lns
	g.lns = nil
	conns := make([]*Conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range conns {
		c.Close(transport.ErrClosed)
	}
	g.wg.Wait()
	return nil
}
