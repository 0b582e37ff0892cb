// Package credit is the sending side of a credit window, for the
// transports that carry frames as messages (NATS, UCX): the bytes a peer
// lets a connection send before it says it has handled them. A sender
// waits while none is left (backpressure); the peer's window messages add
// to it.
//
// A Window is guarded by its connection's mutex: every method but Init is
// called with it held.
package credit

import (
	"context"
	"sync"
	"time"
)

// Window is a connection's credit. The zero value has none; Init must be
// called before use.
type Window struct {
	mu      *sync.Mutex
	room    sync.Cond // credit grew, or the connection closed
	n       int       // bytes that may still be sent; below zero after an overdraft
	starved time.Time // when a sender began to wait; zero once credit came
}

// Init ties w to the connection's mutex.
func (w *Window) Init(mu *sync.Mutex) {
	w.mu = mu
	w.room.L = mu
}

// Set sets the credit to n: the peer's window, when it becomes known.
func (w *Window) Set(n int) { w.n = n }

// Wait waits while no credit is left, until closed reports true or ctx
// ends (its error is returned: the frame was not sent). A sender may
// overdraw the credit by one frame, so that a frame larger than what is
// left never waits forever; the receiver allows for it.
func (w *Window) Wait(ctx context.Context, closed func() bool) error {
	if closed() || w.n > 0 {
		return nil
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			w.mu.Lock()
			w.room.Broadcast()
			w.mu.Unlock()
		})
		defer stop()
	}
	if w.starved.IsZero() {
		w.starved = time.Now()
	}
	for !closed() && w.n <= 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.room.Wait()
	}
	return nil
}

// Take spends n bytes of credit.
func (w *Window) Take(n int) { w.n -= n }

// Grant adds n bytes of credit (the peer handled them, or a frame was
// withdrawn) and wakes the senders waiting for it.
func (w *Window) Grant(n int) {
	w.n += n
	if w.n > 0 {
		w.starved = time.Time{}
	}
	w.room.Broadcast()
}

// Wake wakes every waiting sender: the connection closed.
func (w *Window) Wake() { w.room.Broadcast() }

// Stalled reports how long a sender has waited for credit that the peer
// does not grant, zero when none waits (transport.Staller).
func (w *Window) Stalled(now time.Time) time.Duration {
	if w.starved.IsZero() || w.n > 0 {
		return 0
	}
	return max(now.Sub(w.starved), 0)
}
