package actor

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// The panic lines of one actor are rate-limited: a handler that panics on
// every message would otherwise write a stack per message. After a burst,
// one line per period is written, and it says how many were left out.
// OnPanic still sees every panic, with its stack.
const (
	panicLogBurst = 10
	panicLogEvery = time.Second
)

// live returns the incarnation to run the next message on, waiting out a
// pending restart. It fails with the halt reason once the actor halted,
// and, if ctx is not nil, with ctx.Err() when ctx ends first.
func (a *Actor[K, M]) live(ctx context.Context) (*incarnation[M], error) {
	for {
		inc := a.cur.Load()
		if inc.fn != nil {
			return inc, nil
		}
		var cancel <-chan struct{}
		if ctx != nil {
			cancel = ctx.Done()
		}
		select {
		case <-inc.ready:
		case <-a.abort:
			a.mu.Lock()
			err := a.dropErr
			a.mu.Unlock()
			return nil, err
		case <-cancel:
			return nil, ctx.Err()
		}
	}
}

// invoke runs msg on inc and returns the panic it recovered, if any, once
// the supervisor has decided on it: the caller reports the panic (OnPanic)
// after that, so the next message a sender sends once answered finds the
// restarted handler (or the stopped actor), never the failed incarnation.
// A runtime.Goexit is reported here, as the goroutine does not come back.
// No lock is held.
func (a *Actor[K, M]) invoke(inc *incarnation[M], ctx context.Context, msg M) (perr *PanicError) {
	returned := false
	defer func() {
		if returned {
			return
		}
		r := recover()
		goexit := r == nil // nothing to recover, yet fn did not return
		if goexit {
			r = goexitValue
		}
		perr = &PanicError{Value: r, Stack: debug.Stack()}
		now := time.Now()
		a.logPanic(now, perr)
		a.supervise(inc, perr, now)
		if goexit {
			a.callOnPanic(msg, perr)
		}
	}()
	inc.fn(ctx, msg)
	returned = true
	if !inc.proven.Load() {
		inc.proven.Store(true)
	}
	return nil
}

// logPanic writes the panic and its stack in one Error line, unless the
// actor's panic lines are over their rate.
func (a *Actor[K, M]) logPanic(now time.Time, perr *PanicError) {
	ok, suppressed := a.panicLog.Allow(now)
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.Any("panic", perr.Value), slog.String("stack", string(perr.Stack))}
	if suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	}
	a.log.LogAttrs(context.Background(), slog.LevelError, "velo: handler panicked", attrs...)
}

// supervise decides, after inc failed at now, between a restart and a
// stop.
func (a *Actor[K, M]) supervise(inc *incarnation[M], perr *PanicError, now time.Time) {
	a.mu.Lock()
	if a.cur.Load() != inc {
		// inc is already being replaced (another of its messages failed
		// first, in Spawn mode) or the actor halted: this failure has
		// been answered through OnPanic and counts for nothing more.
		a.mu.Unlock()
		return
	}
	restart, delay := a.sup.failure(now, inc.proven.Load())
	if !restart {
		reason := fmt.Errorf("%w: %q after %d restarts: last panic: %v", ErrStopped, a.name, a.sup.restarts, perr.Value)
		a.mu.Unlock()
		a.log.Error("velo: handler stopped by its supervisor", "reason", reason)
		a.halt(reason)
		return
	}
	// From here until restart stores a new handler, messages wait on
	// next.ready, and failures of inc are ignored (cur != inc).
	next := &incarnation[M]{ready: make(chan struct{})}
	a.cur.Store(next)
	a.restarts.Add(1)
	a.mu.Unlock()
	a.log.Warn("velo: restarting handler", "backoff", delay)
	if delay <= 0 {
		a.restart(next)
		return
	}
	// The failed message still holds its unit, so work is above zero and
	// this add cannot race Stop's wait from zero.
	a.work.add()
	go a.restartAfter(next, delay)
}

// restartAfter restarts after delay, unless the actor halts first, or
// Stop is called and no message is left that would need the new handler.
func (a *Actor[K, M]) restartAfter(next *incarnation[M], delay time.Duration) {
	defer a.work.done()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-a.abort:
		return
	case <-a.stopping:
		// Stop closed slots before closing stopping, so every message
		// that will ever need a handler holds a slot by now.
		if a.slots.Len() == 0 {
			return
		}
		select {
		case <-t.C:
		case <-a.abort:
			return
		}
	}
	a.restart(next)
}

// restart builds a new handler and makes it current in place of the
// placeholder next. A factory that panics stops the actor.
func (a *Actor[K, M]) restart(next *incarnation[M]) {
	fn, err := a.build()
	if err != nil {
		reason := fmt.Errorf("%w: %q: restart %d failed: %v", ErrStopped, a.name, a.restarts.Load(), err)
		a.log.Error("velo: handler stopped: restart failed", "reason", reason)
		a.halt(reason)
		return
	}
	a.mu.Lock()
	if a.cur.Load() != next { // halted meanwhile
		a.mu.Unlock()
		return
	}
	a.cur.Store(&incarnation[M]{fn: fn})
	a.mu.Unlock()
	close(next.ready)
}

// build calls the factory, turning a panic or a nil handler into an error.
func (a *Actor[K, M]) build() (fn func(context.Context, M), err error) {
	defer func() {
		if r := recover(); r != nil {
			fn, err = nil, fmt.Errorf("factory %w", &PanicError{Value: r, Stack: debug.Stack()})
		}
	}()
	fn = a.factory()
	if fn == nil {
		return nil, errNilHandler
	}
	return fn, nil
}

// halt stops the actor for good: no more Tells, no more handler runs, and
// every message not yet started goes to Drop with reason.
func (a *Actor[K, M]) halt(reason error) {
	a.mu.Lock()
	if a.halted {
		a.mu.Unlock()
		return
	}
	a.halted = true
	if a.err == nil {
		a.err = reason
	}
	a.dropErr = reason
	a.cur.Store(a.stopped)
	a.mu.Unlock()

	a.slots.Close()
	close(a.abort)

	// Messages still queued are dropped here. A message that got its slot
	// just before slots closed may be queued after this sweep; the drainer
	// of its queue, which exists as long as the queue is not empty, then
	// finds the stopped incarnation and drops it.
	for _, e := range a.exec.drain(nil) {
		a.callDrop(e.msg, reason)
		a.finish()
	}
}
