package velo

import (
	"context"
	"time"
)

// A Spawn handler's message is handed to a worker goroutine, so that a
// handler that blocks holds up nothing else; that hand-off wakes a thread
// (when another CPU is idle), a third of a round trip on a VM. So when a
// request arrives alone (nothing buffered behind it) for an uncapped
// Spawn handler with no message queued, the receive goroutine runs it
// itself, as Inline does, and a watchdog covers the case the hand-off was
// for: a run that lasts longer than inlineLimit has the connection's
// reading moved to a relief goroutine (transport.Reliever), and its
// handler's next messages go to workers for inlineHold. A request that
// arrives behind a handler which blocks thus waits at most about
// inlineLimit + inlineTick before it is read.
const (
	inlineLimit = time.Millisecond
	inlineTick  = time.Millisecond
	inlineHold  = time.Second
	// inlineIdleTicks is how many ticks with no run the watchdog waits
	// before it exits (it starts again with the next run).
	inlineIdleTicks = 1000
	// inlineMaxSessions: past this many connections an instance runs no
	// request on a receive goroutine. The watchdog looks at every
	// connection each tick, which would then cost more than the thread
	// wake-ups it saves (64 instances of 64 connections in one process
	// starved under the race detector), and an instance that busy has
	// its threads awake anyway.
	inlineMaxSessions = 16
)

// runHere runs in on the receive goroutine (BeginInline said it may).
func (s *session) runHere(ctx context.Context, e *handlerEntry, in *inbound) error {
	m := s.m
	s.inlineEntry.Store(e)
	s.inlineSince.Store(max(in.start, 1))
	m.inlineRuns.Add(1)
	if !m.inlineWatch.Load() {
		m.startInlineWatch()
	}
	_, err := e.actor.TellHere(ctx, s.peer.ID, in)
	s.inlineSince.Store(0)
	m.inlineRuns.Add(-1)
	s.reliever.EndInline()
	return err
}

// startInlineWatch starts the watchdog unless it runs.
func (m *Messenger) startInlineWatch() {
	if !m.inlineWatch.CompareAndSwap(false, true) {
		return
	}
	m.wg.Add(1)
	go m.watchInline()
}

// watchInline relieves the receive goroutines whose handler runs too long.
// It exits once no handler ran there for inlineIdleTicks, and at once
// when none runs while the messenger closes; a run that starts after it
// decided to exit starts another (the flag is cleared before the last
// look, so one of the two always sees the other).
func (m *Messenger) watchInline() {
	defer m.wg.Done()
	t := time.NewTicker(inlineTick)
	defer t.Stop()
	idle := 0
	for {
		<-t.C
		now := monoNow()
		running := false
		m.mu.RLock()
		for s := range m.sessions {
			since := s.inlineSince.Load()
			if since == 0 {
				continue
			}
			running = true
			if now-since > int64(inlineLimit) && s.inlineSince.CompareAndSwap(since, -since) {
				if e := s.inlineEntry.Load(); e != nil {
					e.heldUntil.Store(now + int64(inlineHold))
				}
				s.reliever.Relieve()
			}
		}
		m.mu.RUnlock()
		if running || m.inlineRuns.Load() > 0 {
			idle = 0
			continue
		}
		if idle++; idle < inlineIdleTicks && m.state.Load() < stateClosing {
			continue
		}
		m.inlineWatch.Store(false)
		if m.inlineRuns.Load() == 0 || !m.inlineWatch.CompareAndSwap(false, true) {
			return
		}
		idle = 0
	}
}
