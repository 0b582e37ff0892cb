package actor

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/velo-messenger/velo/mailbox"
)

// slots counts an actor's accepted messages against its capacity: a
// semaphore with the mailbox's overflow policies. The actor needs no queue
// of tokens, only the count, so taking and releasing a slot is one atomic
// operation while nobody waits. Senders that must wait queue in order, and
// a release hands its slot to the first of them rather than freeing it, so
// a sender that comes later (one connection's receive path, looping) cannot
// overtake those waiting.
type slots struct {
	capacity int64
	policy   mailbox.Policy

	n       atomic.Int64 // slots taken, by senders or handed to waiters
	closed  atomic.Bool
	waiting atomic.Int32 // len(queue), readable without mu
	refused atomic.Uint64

	mu    sync.Mutex
	queue []*slotWaiter // guarded by mu: in arrival order
	done  chan struct{} // closed by close
}

// slotWaiter is a sender waiting for a slot.
type slotWaiter struct {
	granted chan struct{} // capacity 1: a slot was handed over
}

func newSlots(capacity int, policy mailbox.Policy) *slots {
	return &slots{capacity: int64(max(capacity, 1)), policy: policy, done: make(chan struct{})}
}

// tryTake takes a slot if one is free.
func (s *slots) tryTake() bool {
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

// fastTake takes a free slot unless senders are waiting for one.
func (s *slots) fastTake() bool { return s.waiting.Load() == 0 && s.tryTake() }

// acquire takes a slot. When none is free, under Block it waits its turn
// until a slot is handed to it, ctx ends (ctx.Err()) or the slots close
// (mailbox.ErrClosed); under Reject it fails at once with mailbox.ErrFull.
// After close it fails with mailbox.ErrClosed. A slot handed over is kept
// even if ctx ended meanwhile.
func (s *slots) acquire(ctx context.Context) error {
	if s.fastTake() {
		return s.taken()
	}
	if s.closed.Load() {
		return mailbox.ErrClosed
	}
	if s.policy == mailbox.Reject {
		if s.tryTake() {
			return s.taken()
		}
		s.refused.Add(1)
		return mailbox.ErrFull
	}
	s.mu.Lock()
	if len(s.queue) == 0 && s.tryTake() {
		s.mu.Unlock()
		return s.taken()
	}
	w := &slotWaiter{granted: make(chan struct{}, 1)}
	s.queue = append(s.queue, w)
	s.waiting.Add(1)
	s.mu.Unlock()
	// release frees a slot and then looks at waiting; a waiter counts
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
		err = mailbox.ErrClosed
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
	if err == mailbox.ErrClosed {
		s.release()
		return err
	}
	return s.taken()
}

// taken ends a successful take. The closed check follows the take: a Stop
// that closes the slots and then reads the count (restartAfter does)
// either sees this slot or makes this take fail.
func (s *slots) taken() error {
	if s.closed.Load() {
		s.release()
		return mailbox.ErrClosed
	}
	return nil
}

// release gives up a slot: to the first waiting sender if there is one,
// else back to the pool.
func (s *slots) release() {
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
func (s *slots) grantFree() {
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

// close makes every later acquire fail, and wakes those waiting.
func (s *slots) close() {
	if !s.closed.Swap(true) {
		close(s.done)
	}
}

// len returns the slots taken.
func (s *slots) len() int { return int(s.n.Load()) }
