package actor

import (
	"context"
	"sync"
	"sync/atomic"
)

// entry is a message waiting in a queue, with the ctx its Tell passed.
type entry[M any] struct {
	ctx context.Context
	msg M
}

// queue is a FIFO of entries in a ring buffer whose size is a power of two.
// It grows only when full, so it never holds more than twice the most
// entries it had at once. It is not safe for concurrent use; the actor
// guards it with its queue mutex.
type queue[M any] struct {
	buf  []entry[M]
	head int // index of the oldest entry
	n    int // entries queued
}

func (q *queue[M]) len() int { return q.n }

func (q *queue[M]) push(e entry[M]) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = e
	q.n++
}

func (q *queue[M]) grow() {
	buf := make([]entry[M], max(4, 2*len(q.buf)))
	// The live entries are buf[head:] followed by buf[:head]; lay them out
	// from index 0.
	k := copy(buf, q.buf[q.head:])
	copy(buf[k:], q.buf[:q.head])
	q.buf, q.head = buf, 0
}

func (q *queue[M]) pop() (entry[M], bool) {
	if q.n == 0 {
		return entry[M]{}, false
	}
	e := q.buf[q.head]
	q.buf[q.head] = entry[M]{} // let the ctx and msg be collected
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	return e, true
}

// takeAll appends every queued entry to dst in order, empties q and
// returns dst.
func (q *queue[M]) takeAll(dst []entry[M]) []entry[M] {
	for {
		e, ok := q.pop()
		if !ok {
			return dst
		}
		dst = append(dst, e)
	}
}

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
