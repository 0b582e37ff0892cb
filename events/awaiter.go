package events

import "context"

// cell is where the awaiters of one event wait: the pending local event's,
// or a remote event's proxy. It is resolved once, under Manager.mu.
type cell struct {
	done chan struct{}
	err  error // the outcome; written before done is closed
}

func newCell() *cell { return &cell{done: make(chan struct{})} }

func (c *cell) resolve(err error) {
	c.err = err
	close(c.done)
}

// closedChan is what Done returns for an awaiter resolved when created.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Awaiter waits for one event, local or remote. Any number of goroutines
// may call Wait, as often as they like: each gets the same outcome.
type Awaiter struct {
	h   Handle
	c   *cell // nil when the outcome was known at creation: then in err
	err error
}

// Handle returns the event the awaiter waits for.
func (a *Awaiter) Handle() Handle { return a.h }

// Done returns a channel closed once the outcome is known; Wait then returns
// it without blocking.
func (a *Awaiter) Done() <-chan struct{} {
	if a.c == nil {
		return closedChan
	}
	return a.c.done
}

// Wait blocks until the event completes or ctx ends. It returns nil if the
// event was triggered; a *PoisonError (matching ErrPoisoned) carrying the
// exact reason if it was poisoned; an error matching ErrOwnerLost,
// ErrEventGone or ErrClosed if the outcome cannot be known; ctx.Err() if
// ctx ended first. An outcome already known wins over an ended ctx.
func (a *Awaiter) Wait(ctx context.Context) error {
	if a.c == nil {
		return a.err
	}
	select {
	case <-a.c.done:
		return a.c.err
	default:
	}
	select {
	case <-a.c.done:
		return a.c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
