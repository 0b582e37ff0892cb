package actor

import (
	"context"
	"sync"
	"sync/atomic"
)

// group counts units of outstanding work (accepted messages not finished,
// goroutines not exited) and lets Stop wait until none is left.
//
// sync.WaitGroup does not fit: Tell adds a unit for each message while Stop
// may already be waiting, and a WaitGroup forbids an Add from zero that is
// concurrent with Wait.
type group struct {
	n       atomic.Int64
	waiting atomic.Bool // set once someone waits; before that, reaching zero is free

	mu   sync.Mutex
	zero chan struct{} // guarded by mu; closed when n reaches zero while waited on
}

func (g *group) add() { g.n.Add(1) }

func (g *group) done() {
	// A waiter sets waiting and then reads n; done lowers n and then reads
	// waiting. Atomics are sequentially consistent, so at least one of the
	// two sees the other: either the waiter reads n == 0 itself, or done
	// sees waiting and closes zero.
	if g.n.Add(-1) == 0 && g.waiting.Load() {
		g.mu.Lock()
		if g.zero != nil {
			close(g.zero)
			g.zero = nil
		}
		g.mu.Unlock()
	}
}

// wait returns nil once n is zero, or ctx.Err() if ctx ends first.
func (g *group) wait(ctx context.Context) error {
	g.mu.Lock()
	g.waiting.Store(true)
	if g.n.Load() == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.zero == nil {
		g.zero = make(chan struct{})
	}
	zero := g.zero
	g.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
