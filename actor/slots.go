package actor

import (
	"context"
	"sync/atomic"

	"github.com/velo-messenger/velo/mailbox"
)

// slots counts an actor's accepted messages against its capacity: a
// semaphore with the mailbox's overflow policies. The actor needs no queue
// of tokens, only the count, so taking and releasing a slot is one atomic
// operation when there is room; only a sender that must wait takes the
// lock.
type slots struct {
	capacity int64
	policy   mailbox.Policy

	n       atomic.Int64 // slots taken
	closed  atomic.Bool
	waiting atomic.Int32 // senders in the slow path of acquire
	refused atomic.Uint64

	// signal (capacity 1) wakes one waiting sender when a slot frees; a
	// sender that takes a slot and sees another free while others wait
	// passes the signal on, so that two releases in a row wake two.
	signal chan struct{}
	done   chan struct{} // closed by close
}

func newSlots(capacity int, policy mailbox.Policy) *slots {
	return &slots{
		capacity: int64(max(capacity, 1)),
		policy:   policy,
		signal:   make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
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

// acquire takes a slot. When none is free, under Block it waits until one
// frees, ctx ends (ctx.Err()) or the slots close (mailbox.ErrClosed); under
// Reject it fails at once with mailbox.ErrFull. After close it fails with
// mailbox.ErrClosed. A slot that is free is taken even if ctx has ended.
func (s *slots) acquire(ctx context.Context) error {
	if s.tryTake() {
		return s.taken()
	}
	if s.closed.Load() {
		return mailbox.ErrClosed
	}
	if s.policy == mailbox.Reject {
		s.refused.Add(1)
		return mailbox.ErrFull
	}
	// Announce the wait before trying again: release frees the slot before
	// it looks for waiters, so one of the two sees the other.
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	var ctxDone <-chan struct{}
	if ctx != nil {
		ctxDone = ctx.Done()
	}
	for {
		if s.closed.Load() {
			return mailbox.ErrClosed
		}
		if s.tryTake() {
			if s.waiting.Load() > 1 && s.n.Load() < s.capacity {
				s.notify() // another slot is free and others wait
			}
			return s.taken()
		}
		select {
		case <-s.signal:
		case <-s.done:
		case <-ctxDone:
			return ctx.Err()
		}
	}
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

// release frees a slot and wakes a sender waiting for one.
func (s *slots) release() {
	s.n.Add(-1)
	if s.waiting.Load() > 0 {
		s.notify()
	}
}

func (s *slots) notify() {
	select {
	case s.signal <- struct{}{}:
	default: // a signal is pending already
	}
}

// close makes every later acquire fail, and wakes those waiting.
func (s *slots) close() {
	if !s.closed.Swap(true) {
		close(s.done)
	}
}

// len returns the slots taken.
func (s *slots) len() int { return int(s.n.Load()) }
