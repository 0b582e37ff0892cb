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

	// n is the count of slots taken (by senders, or handed to waiters),
	// with closedBit set once Close was called. A set bit puts n above any
	// capacity, so the one compare-and-swap that takes a slot also checks
	// that the slots are open: a take either comes before Close in n's
	// order, and Len read after Close counts it, or it fails.
	n       atomic.Int64
	waiting atomic.Int32 // len(queue), readable without mu
	refused atomic.Uint64

	mu    sync.Mutex
	queue []*waiter     // guarded by mu: in arrival order
	done  chan struct{} // closed by Close
}

// closedBit is the bit of Slots.n that Close sets. It also bounds the
// capacity.
const closedBit = 1 << 62

// waiter is a sender waiting for a slot.
type waiter struct {
	granted chan struct{} // capacity 1: a slot was handed over
}

// NewSlots returns Slots with capacity free slots and the given overflow
// policy. A capacity below 1 is treated as 1, and one above 1<<62 - 1 (no
// memory holds that many messages) as 1<<62 - 1. It panics if policy is
// not Block or Reject, a programming error like a negative channel size.
func NewSlots(capacity int, policy Policy) *Slots {
	if !policy.Valid() {
		panic("velo: mailbox.NewSlots: undefined " + policy.String())
	}
	c := min(max(int64(capacity), 1), closedBit-1)
	return &Slots{capacity: c, policy: policy, done: make(chan struct{})}
}

// tryTake takes a slot if one is free and the slots are open.
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

// TryAcquire takes a slot if one is free, no sender is waiting for one
// and the slots are open, and reports whether it did. It never waits and
// counts no refusal: a caller that got false may go on to Acquire, which
// waits, or says why there is no slot. It is the fast path, small enough
// to be inlined.
func (s *Slots) TryAcquire() bool {
	return s.waiting.Load() == 0 && s.tryTake()
}

// Acquire takes a slot. When none is free, under Block it waits its turn
// until a slot is handed to it, ctx ends (ctx.Err()) or the slots close
// (ErrClosed); under Reject it fails at once with ErrFull, and counts the
// refusal. After Close it fails with ErrClosed. A slot handed over is kept
// even if ctx ended meanwhile. A nil ctx waits without end.
func (s *Slots) Acquire(ctx context.Context) error {
	if s.TryAcquire() {
		return nil
	}
	if s.Closed() {
		return ErrClosed
	}
	if s.policy == Reject {
		if s.tryTake() {
			return nil
		}
		if s.Closed() {
			return ErrClosed
		}
		s.refused.Add(1)
		return ErrFull
	}
	s.mu.Lock()
	if len(s.queue) == 0 && s.tryTake() {
		s.mu.Unlock()
		return nil
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
		return s.handedOver()
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
	return s.handedOver()
}

// handedOver ends a wait that was handed a slot. The slot stayed taken
// through the hand-over, so Len never missed it; but a sender that waited
// across Close does not come back with it: after Close, no Acquire
// succeeds.
func (s *Slots) handedOver() error {
	if s.Closed() {
		s.Release()
		return ErrClosed
	}
	return nil
}

// Release gives up a slot taken by Acquire or TryAcquire: to the first
// waiting sender if there is one, else back to the free ones. It leaves
// closedBit alone: n counts at least this slot.
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
	if s.n.Or(closedBit)&closedBit == 0 {
		close(s.done)
	}
}

// Closed reports whether Close was called.
func (s *Slots) Closed() bool { return s.n.Load()&closedBit != 0 }

// Len returns how many slots are taken.
func (s *Slots) Len() int { return int(s.n.Load() &^ closedBit) }

// Cap returns the capacity given to NewSlots (at least 1).
func (s *Slots) Cap() int { return int(s.capacity) }

// Policy returns the overflow policy given to NewSlots.
func (s *Slots) Policy() Policy { return s.policy }

// Waiting returns how many senders wait for a slot (Block only).
func (s *Slots) Waiting() int { return int(s.waiting.Load()) }

// Refused returns how many Acquire calls failed with ErrFull (Reject
// only).
func (s *Slots) Refused() uint64 { return s.refused.Load() }
