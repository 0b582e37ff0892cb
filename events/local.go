package events

import (
	"errors"
	"fmt"
	"math"
	"runtime"

	"github.com/velo-messenger/velo/peer"
)

// slot holds one local event: pending, then completed until the slot is
// reused for a newer event with the next generation.
type slot struct {
	gen    uint32
	kind   kind      // kindPending until the event completes
	reason string    // the poison reason once kind is kindPoisoned
	cell   *cell     // awaiters of the pending event; nil until the first one
	subs   []peer.ID // remote subscribers of the pending event
}

// Event is a local event, created by Manager.NewEvent. It is a small handle
// object: the event's state lives in the manager, and Handle names it for
// other instances.
//
// An event completes once, by Trigger or Poison, from any goroutine. If the
// program drops every reference to an Event that has not completed, the
// garbage collector's cleanup poisons it with DroppedReason, so no awaiter
// waits forever for an event nobody can complete any more.
type Event struct {
	m       *Manager
	h       Handle
	cleanup runtime.Cleanup
}

// DroppedReason is the poison reason of an Event that was garbage-collected
// before it completed.
const DroppedReason = "event dropped without completion"

// eventRef is what the cleanup of an Event needs; it must not point back to
// the Event, or the Event would never become unreachable.
type eventRef struct {
	m *Manager
	h Handle
}

// NewEvent creates a pending local event.
func (m *Manager) NewEvent() (*Event, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	var idx uint32
	if m.reuse.len() > m.opts.RetainCompleted {
		idx = m.reuse.pop()
		s := &m.slots[idx]
		s.gen++
		if s.gen == 0 { // generation 0 is never issued; a wrap skips it
			s.gen = 1
		}
		s.kind, s.reason = kindPending, ""
	} else {
		if uint64(len(m.slots)) > math.MaxUint32 {
			m.mu.Unlock()
			return nil, errors.New("events: slot table full")
		}
		idx = uint32(len(m.slots))
		m.slots = append(m.slots, slot{gen: 1})
	}
	m.pending++
	h := Handle{Owner: m.self, Epoch: m.epoch, Index: idx, Generation: m.slots[idx].gen}
	m.mu.Unlock()

	ev := &Event{m: m, h: h}
	ev.cleanup = runtime.AddCleanup(ev, poisonDropped, eventRef{m: m, h: h})
	return ev, nil
}

// poisonDropped runs on the runtime's cleanup goroutine once an Event became
// unreachable. It must not block: completing only queues messages.
func poisonDropped(r eventRef) {
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if s, ok := m.lookupLocked(r.h); ok && s.kind == kindPending {
		m.log.Debug("events: event dropped without completion, poisoning it", "event", r.h)
		m.finishLocked(r.h, s, kindPoisoned, DroppedReason)
	}
}

// Handle returns the handle naming the event, to give to awaiters.
func (e *Event) Handle() Handle { return e.h }

// Trigger completes the event successfully: every awaiter's Wait returns
// nil. It returns ErrAlreadyCompleted if the event already completed.
func (e *Event) Trigger() error { return e.finish(kindTriggered, "") }

// Poison completes the event with a failure: every awaiter's Wait returns a
// *PoisonError carrying reason exactly. It returns ErrAlreadyCompleted if
// the event already completed, ErrReasonTooLong beyond MaxReasonLen bytes.
func (e *Event) Poison(reason string) error {
	if len(reason) > MaxReasonLen {
		return ErrReasonTooLong
	}
	return e.finish(kindPoisoned, reason)
}

func (e *Event) finish(k kind, reason string) error {
	err := e.m.complete(e.h, k, reason)
	switch {
	case err == nil:
		// Completed: the cleanup has nothing left to do. e is reachable
		// across Stop thanks to the KeepAlive below.
		e.cleanup.Stop()
	case errors.Is(err, ErrEventGone):
		// A slot is reused only after its event completed, so the event
		// this Event names did complete.
		err = fmt.Errorf("%w: %s", ErrAlreadyCompleted, e.h)
	}
	// Without this, e could become unreachable once its fields are read,
	// and its cleanup could poison the event before complete runs.
	runtime.KeepAlive(e)
	return err
}

// complete triggers or poisons the local event h.
func (m *Manager) complete(h Handle, k kind, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	s, ok := m.lookupLocked(h)
	if !ok {
		return m.missingError(h)
	}
	if s.kind != kindPending {
		return fmt.Errorf("%w: %s", ErrAlreadyCompleted, h)
	}
	m.finishLocked(h, s, k, reason)
	return nil
}

// finishLocked records the outcome of the pending event h in s, wakes its
// local awaiters and queues a trigger message for each remote subscriber.
// Recording the outcome and taking the subscriber list happen under m.mu,
// as does onSubscribe's check: a subscription either lands before this
// (and is in s.subs) or after (and sees the outcome).
func (m *Manager) finishLocked(h Handle, s *slot, k kind, reason string) {
	s.kind, s.reason = k, reason
	m.pending--
	if s.cell != nil {
		s.cell.resolve(outcomeError(h, k, reason))
		s.cell = nil
	}
	if len(s.subs) > 0 {
		msg := appendOutcome(nil, h, k, reason) // shared, never modified
		for _, p := range s.subs {
			l := m.links[p]
			delete(l.subs, h)
			m.subs--
			l.triggers = append(l.triggers, msg)
			m.startLinkLocked(l)
		}
		clear(s.subs)
		if cap(s.subs) > 8 {
			s.subs = nil
		} else {
			s.subs = s.subs[:0]
		}
	}
	m.reuse.push(h.Index)
}

// lookupLocked returns the slot of the local handle h if h still names it.
// A handle of another epoch never does: an earlier incarnation of this
// instance issued it, and its Index and Generation may well name one of
// this incarnation's events.
func (m *Manager) lookupLocked(h Handle) (*slot, bool) {
	if h.Epoch != m.epoch || h.Generation == 0 || uint64(h.Index) >= uint64(len(m.slots)) {
		return nil, false
	}
	s := &m.slots[h.Index]
	if s.gen != h.Generation {
		return nil, false
	}
	return s, true
}

// missingKind says why lookupLocked did not find the local handle h:
// kindRestarted if another incarnation of this instance issued it,
// kindGone if its slot was reused or never used. Epoch 0 is nobody's, so a
// handle with it is gone, like the zero Handle.
func (m *Manager) missingKind(h Handle) kind {
	if h.Epoch != 0 && h.Epoch != m.epoch {
		return kindRestarted
	}
	return kindGone
}

// missingError is the error for a local handle lookupLocked did not find.
func (m *Manager) missingError(h Handle) error { return outcomeError(h, m.missingKind(h), "") }

func (m *Manager) localAwaiterLocked(h Handle) (*Awaiter, error) {
	s, ok := m.lookupLocked(h)
	if !ok {
		return nil, m.missingError(h)
	}
	if s.kind != kindPending {
		return &Awaiter{h: h, err: outcomeError(h, s.kind, s.reason)}, nil
	}
	if s.cell == nil {
		s.cell = newCell()
	}
	return &Awaiter{h: h, c: s.cell}, nil
}

// outcomeError is what Wait returns for an event that ended with k.
func outcomeError(h Handle, k kind, reason string) error {
	switch k {
	case kindTriggered:
		return nil
	case kindPoisoned:
		return &PoisonError{Handle: h, Reason: reason}
	case kindRestarted:
		return restartedError(h)
	default:
		return goneError(h)
	}
}

// fifo is a growable ring of slot indices.
type fifo struct {
	buf     []uint32
	head, n int
}

func (q *fifo) len() int { return q.n }

func (q *fifo) push(v uint32) {
	if q.n == len(q.buf) {
		nb := make([]uint32, max(16, 2*len(q.buf)))
		for i := range q.n {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

// pop removes the oldest index; the caller checked len() > 0.
func (q *fifo) pop() uint32 {
	v := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return v
}
