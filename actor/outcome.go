package actor

import (
	"context"
	"runtime/debug"
)

// The outcomes of a message the actor accepted. Each gives back the
// message's slot and its unit of work, once, so that Stop's wait ends.

// deliver runs a message taken off a queue, or drops it if the actor
// halted first, or expires it if its ctx ended while it waited.
func (a *Actor[K, M]) deliver(ctx context.Context, msg M) {
	settled := false
	defer func() {
		if !settled { // the handler called runtime.Goexit
			a.finish()
		}
	}()
	inc, err := a.live(nil)
	if err != nil {
		settled = true
		a.callDrop(msg, err)
		a.finish()
		return
	}
	// Its turn has come. A ctx that ended meanwhile (the caller gave up,
	// its deadline passed) means nobody wants the handler's work any
	// more: skip it. The check is one call, and the handler would
	// otherwise be started only to find out.
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			settled = true
			a.expire(msg, err)
			return
		}
	}
	perr := a.invoke(inc, ctx, msg)
	settled = true
	a.settle(msg, perr)
}

// finish releases the slot and unit of a message that was dropped or that
// Inline could not run.
func (a *Actor[K, M]) finish() {
	a.slots.Release()
	a.work.done()
}

// settle ends a message that ran: it frees the message's room in the
// mailbox, then reports the outcome (After, or OnPanic), then releases the
// unit that Stop waits for. Room is freed first so that a sender that waits
// for the report before sending again always finds room.
func (a *Actor[K, M]) settle(msg M, perr *PanicError) {
	a.slots.Release()
	if perr != nil {
		a.callOnPanic(msg, perr)
	} else if a.after != nil {
		a.after(msg)
	}
	a.work.done()
}

// expire ends a message whose ctx had ended before its turn came, in the
// same order as settle: room first, then the report (Expired), then the
// unit.
func (a *Actor[K, M]) expire(msg M, err error) {
	a.slots.Release()
	a.expired.Add(1)
	if a.onExpired != nil {
		a.callExpired(msg, err)
	}
	a.work.done()
}

func (a *Actor[K, M]) callOnPanic(msg M, perr *PanicError) {
	if a.onPanic == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("velo: OnPanic panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	a.onPanic(msg, perr)
}

func (a *Actor[K, M]) callDrop(msg M, err error) {
	if a.drop == nil {
		a.log.Warn("velo: message dropped", "reason", err)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("velo: Drop panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	a.drop(msg, err)
}

func (a *Actor[K, M]) callExpired(msg M, err error) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("velo: Expired panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	a.onExpired(msg, err)
}
