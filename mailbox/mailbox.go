package mailbox

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
)

// Policy says what Push does when the mailbox is full.
type Policy int

const (
	// Block makes Push wait for room (backpressure) until its context ends
	// or the mailbox closes.
	Block Policy = iota
	// Reject makes Push fail at once with ErrFull when the mailbox is full.
	Reject
)

// String returns "block" or "reject".
func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case Reject:
		return "reject"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// Valid reports whether p is one of the defined policies.
func (p Policy) Valid() bool { return p == Block || p == Reject }

var (
	// ErrFull is returned by a push that found no room under the Reject
	// policy, and by TryPush.
	ErrFull = errors.New("velo: mailbox full")
	// ErrClosed is returned by a push after Close, and by Pop once a closed
	// mailbox is empty.
	ErrClosed = errors.New("velo: mailbox closed")
)

// Mailbox is a bounded FIFO queue of T. Create it with New; the zero value
// is not usable.
type Mailbox[T any] struct {
	ch     chan T
	policy Policy

	// done is closed at the start of Close, to wake pushers that wait for
	// room while they hold mu for reading.
	done      chan struct{}
	closeOnce sync.Once

	// mu keeps Close from closing ch under a pusher's feet. A pusher holds
	// it for reading from its closed check until its send is over; Close
	// takes it for writing, so closing ch waits for every pusher to leave.
	mu     sync.RWMutex
	closed bool // guarded by mu; true once ch is closed

	refused atomic.Uint64
}

// New returns an empty mailbox that holds up to capacity values; a capacity
// below 1 is treated as 1. It panics if policy is not Block or Reject, a
// programming error like a negative channel size.
func New[T any](capacity int, policy Policy) *Mailbox[T] {
	if !policy.Valid() {
		panic("velo: mailbox.New: undefined " + policy.String())
	}
	if capacity < 1 {
		capacity = 1
	}
	return &Mailbox[T]{
		ch:     make(chan T, capacity),
		policy: policy,
		done:   make(chan struct{}),
	}
}

// Push appends v. When the mailbox is full, a Block mailbox waits for room
// until ctx ends (returning ctx.Err()) or the mailbox closes (ErrClosed); a
// Reject mailbox returns ErrFull at once. A Push that finds room enqueues
// even if ctx has already ended. After Close, Push returns ErrClosed.
func (m *Mailbox[T]) Push(ctx context.Context, v T) error {
	if m.policy == Reject {
		return m.TryPush(v)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	// Fast path: room now. It skips the three-way select and, with it,
	// ctx.Done, which allocates on the first call for some contexts.
	select {
	case m.ch <- v:
		return nil
	default:
	}
	// Close closes done before it waits for mu, so a pusher parked here is
	// woken and lets go of its read lock; Close then closes ch.
	select {
	case m.ch <- v:
		return nil
	case <-m.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryPush appends v if there is room and never waits. It returns ErrFull
// when the mailbox is full (whatever the policy; the refusal is counted)
// and ErrClosed after Close.
func (m *Mailbox[T]) TryPush(v T) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	select {
	case m.ch <- v:
		return nil
	default:
		m.refused.Add(1)
		return ErrFull
	}
}

// Pop removes and returns the oldest value, waiting for one until ctx ends
// (returning ctx.Err()). After Close it still returns what was queued, then
// ErrClosed.
func (m *Mailbox[T]) Pop(ctx context.Context) (T, error) {
	select {
	case v, ok := <-m.ch:
		return m.popped(v, ok)
	default:
	}
	select {
	case v, ok := <-m.ch:
		return m.popped(v, ok)
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

func (m *Mailbox[T]) popped(v T, ok bool) (T, error) {
	if !ok {
		return v, ErrClosed
	}
	return v, nil
}

// TryPop removes and returns the oldest value if there is one, without
// waiting. It reports false when the mailbox is empty, closed or not.
func (m *Mailbox[T]) TryPop() (T, bool) {
	select {
	case v, ok := <-m.ch:
		return v, ok
	default:
		var zero T
		return zero, false
	}
}

// Len returns the number of values queued. With concurrent pushers and
// poppers it is only a snapshot.
func (m *Mailbox[T]) Len() int { return len(m.ch) }

// Cap returns the capacity given to New (at least 1).
func (m *Mailbox[T]) Cap() int { return cap(m.ch) }

// Policy returns the overflow policy given to New.
func (m *Mailbox[T]) Policy() Policy { return m.policy }

// Refused returns how many pushes failed with ErrFull.
func (m *Mailbox[T]) Refused() uint64 { return m.refused.Load() }

// Close stops the mailbox from taking values: pushers waiting for room
// return ErrClosed, and so do later pushes. Values already queued stay
// there for Pop. Close is idempotent and safe to call concurrently with
// every other method; when it returns, no value can be enqueued any more.
func (m *Mailbox[T]) Close() {
	m.closeOnce.Do(func() {
		// Step 1: wake pushers blocked in the three-way select; they
		// return ErrClosed and release their read locks. A pusher that
		// finds room at the same moment may still enqueue: either outcome
		// is fine, because ch is not closed yet.
		close(m.done)
		// Step 2: wait until no pusher is inside Push or TryPush. New
		// pushers now block on the lock and, once they get it, see closed.
		m.mu.Lock()
		m.closed = true
		// Step 3: no one can send any more, so closing ch is safe. Pop
		// drains what remains, then sees the channel closed.
		close(m.ch)
		m.mu.Unlock()
	})
}
