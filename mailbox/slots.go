package mailbox

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// Slots counts the messages a mailbox holds against its capacity: a
// semaphore with an overflow policy. A holder needs no token, only the
// count, so taking and releasing a slot is one atomic operation while
// nobody waits. Senders that must wait queue in order, and a release
// hands its slot to the first of them rather than freeing it, so a sender
// that comes later (one connection's receive path, looping) cannot
// overtake those waiting.
//
// Create Slots with NewSlots; the zero value is not usable. All methods
// are safe for concurrent use.
type Slots struct {
	capacity int64
	policy   Policy

	n       atomic.Int64 // slots taken, by senders or handed to waiters
	closed  atomic.Bool
	waiting atomic.Int32 // len(queue), readable without mu
	refused atomic.Uint64

	mu    sync.Mutex
	queue []*waiter     // guarded by mu: in arrival order
	done  chan struct{} // closed by Close
}

// waiter is a sender waiting for a slot.
type waiter struct {
	granted chan struct{} // capacity 1: a slot was handed over
}

// NewSlots returns Slots with capacity free slots (a capacity below 1 is
// treated as 1) and the given overflow policy. It panics if policy is not
// Block or Reject, a programming error like a negative channel size.
func NewSlots(capacity int, policy Policy) *Slots {
	if !policy.Valid() {
		panic("velo: mailbox.NewSlots: undefined " + policy.String())
	}
	return &Slots{capacity: int64(max(capacity, 1)), policy: policy, done: make(chan struct{})}
}

// tryTake takes a slot if one is free.
func (s *Slots) tryTake() bool {
	for {
		n := s.n.Load()
		if n >= s.capacity {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// TryAcquire takes a slot if one is free and no sender is waiting for
// one, and never waits. It returns ErrClosed after Close, and ErrFull
// otherwise when it took nothing, whatever the policy; that ErrFull is not
// counted as a refusal (see Refused), so a caller may go on to Acquire.
func (s *Slots) TryAcquire() error {
	if s.waiting.Load() == 0 && s.tryTake() {
		return s.taken()
	}
	if s.closed.Load() {
		return ErrClosed
	}
	return ErrFull
}

// Acquire takes a slot. When none is free, under Block it waits its turn
// until a slot is handed to it, ctx ends (ctx.Err()) or the slots close
// (ErrClosed); under Reject it fails at once with ErrFull, and counts the
// refusal. After Close it fails with ErrClosed. A slot handed over is kept
// even if ctx ended meanwhile. A nil ctx waits without end.
func (s *Slots) Acquire(ctx context.Context) error {
	if s.waiting.Load() == 0 && s.tryTake() {
		return s.taken()
	}
	if s.closed.Load() {
		return ErrClosed
	}
	if s.policy == Reject {
		if s.tryTake() {
			return s.taken()
		}
		s.refused.Add(1)
		return ErrFull
	}
	s.mu.Lock()
	if len(s.queue) == 0 && s.tryTake() {
		s.mu.Unlock()
		return s.taken()
	}
	w := &waiter{granted: make(chan struct{}, 1)}
	s.queue = append(s.queue, w)
	s.waiting.Add(1)
	s.mu.Unlock()
	// Release frees a slot and then looks at waiting; a waiter counts
	// itself in waiting before it takes its last look at the count. One
	// of the two always sees the other, so no slot stays free while a
	// waiter sleeps (see grantFree).
	s.grantFree()

	var ctxDone <-chan struct{}
	if ctx != nil {
		ctxDone = ctx.Done()
	}
	var err error
	select {
	case <-w.granted:
		return s.taken()
	case <-s.done:
		err = ErrClosed
	case <-ctxDone:
		err = ctx.Err()
	}
	s.mu.Lock()
	if i := slices.Index(s.queue, w); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
		s.waiting.Add(-1)
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	// A slot was handed over as we gave up: it is ours.
	<-w.granted
	if err == ErrClosed {
		s.Release()
		return err
	}
	return s.taken()
}

// taken ends a successful take. The closed check follows the take: so a
// caller that closes the slots and then reads Len either sees this slot
// or makes this take fail, and Len read after Close never misses a holder.
func (s *Slots) taken() error {
	if s.closed.Load() {
		s.Release()
		return ErrClosed
	}
	return nil
}

// Release gives up a slot taken by Acquire or TryAcquire: to the first
// waiting sender if there is one, else back to the free ones.
func (s *Slots) Release() {
	if s.waiting.Load() > 0 {
		s.mu.Lock()
		if len(s.queue) > 0 {
			w := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.waiting.Add(-1)
			s.mu.Unlock()
			w.granted <- struct{}{} // the slot passes over as it is
			return
		}
		s.mu.Unlock()
	}
	s.n.Add(-1)
	if s.waiting.Load() > 0 {
		s.grantFree() // a sender queued while we freed the slot
	}
}

// grantFree hands free slots to waiting senders, first come first served.
func (s *Slots) grantFree() {
	s.mu.Lock()
	for len(s.queue) > 0 && s.tryTake() {
		w := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.waiting.Add(-1)
		w.granted <- struct{}{}
	}
	if len(s.queue) == 0 {
		s.queue = nil // let a long queue's array go
	}
	s.mu.Unlock()
}

// Close makes every later Acquire and TryAcquire fail with ErrClosed, and
// wakes the senders waiting, which fail the same way. Slots already held
// stay held until released. Close is idempotent.
func (s *Slots) Close() {
	if !s.closed.Swap(true) {
		close(s.done)
	}
}

// Len returns how many slots are taken.
func (s *Slots) Len() int { return int(s.n.Load()) }

// Cap returns the capacity given to NewSlots (at least 1).
func (s *Slots) Cap() int { return int(s.capacity) }

// Policy returns the overflow policy given to NewSlots.
func (s *Slots) Policy() Policy { return s.policy }

// Waiting returns how many senders wait for a slot (Block only).
func (s *Slots) Waiting() int { return int(s.waiting.Load()) }

// Refused returns how many Acquire calls failed with ErrFull (Reject
// only).
func (s *Slots) Refused() uint64 { return s.refused.Load() }
