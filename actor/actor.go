package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/velo-messenger/velo/internal/lograte"
	"github.com/velo-messenger/velo/mailbox"
)

// incarnation is one handler built by the factory. The supervisor replaces
// the current incarnation on each restart; the goroutines that run
// messages load it once per message.
type incarnation[M any] struct {
	// fn is the handler; nil while a restart is pending, and in the
	// stopped incarnation.
	fn func(context.Context, M)
	// ready is closed when the restart this placeholder stands for is over
	// (fn == nil only; nil in the stopped incarnation, which never ends).
	ready chan struct{}
	// proven is set once fn has finished a message, which ends a backoff
	// burst (see RestartPolicy.MaxBackoff).
	proven atomic.Bool
}

// Actor runs the messages told to it on a handler built by its factory,
// under one of three modes, with a bounded capacity and a supervisor. All
// its methods are safe for concurrent use. Create it with New.
//
// Each message told has exactly one outcome: Tell returns an error (the
// message was not taken); or the handler runs it and returns; or the
// handler panics on it and Config.OnPanic gets it; or its ctx ended before
// its turn came and Config.Expired gets it; or the actor stops before
// running it and Config.Drop gets it.
type Actor[K comparable, M any] struct {
	name      string
	factory   func() func(context.Context, M)
	onPanic   func(M, *PanicError)
	after     func(M)
	wait      func(M, bool)
	onExpired func(M, error)
	drop      func(M, error)
	log       *slog.Logger
	panicLog  *lograte.Limiter
	errFull   error // returned by Tell when full under Reject

	// slots holds one slot per accepted message not yet finished; its
	// capacity is Config.Mailbox and its policy Config.Overflow. Closing
	// it is how the actor stops admitting messages: a Tell that got a slot
	// did so before the close, and is counted by work.
	slots *mailbox.Slots
	// exec runs the accepted messages, as Config.Mode says.
	exec executor[K, M]
	// inline is exec in Inline mode, nil otherwise. Tell calls it directly:
	// a call through the interface to a generic type's method goes through
	// a wrapper, a cost that shows on the one path with no queue and no
	// hand-off to amortize it.
	inline *inline[K, M]
	// work counts accepted messages not finished plus the actor's own
	// goroutines (workers, drainers, restart timer); Stop waits for it to
	// reach zero. A pool worker runs on its own unit, each message on its
	// message's.
	work group
	// cur is the incarnation new messages run on.
	cur atomic.Pointer[incarnation[M]]
	// stopped is the incarnation stored in cur once the actor halts.
	stopped *incarnation[M]
	// abort is closed when the actor halts: messages not yet started go to
	// Drop instead of running.
	abort chan struct{}
	// stopping is closed when Stop is first called.
	stopping chan struct{}
	restarts atomic.Int64
	expired  atomic.Uint64

	mu        sync.Mutex // guards the fields below, and cur's transitions
	sup       supervisor
	err       error // why the actor takes no more messages; set once
	dropErr   error // what Drop is given once abort is closed
	halted    bool
	stopAsked bool
}

// New validates cfg, calls cfg.Factory once, and returns the actor. No
// goroutine runs until a message arrives.
func New[K comparable, M any](cfg Config[K, M]) (*Actor[K, M], error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	a := &Actor[K, M]{
		name:      cfg.Name,
		factory:   cfg.Factory,
		onPanic:   cfg.OnPanic,
		after:     cfg.After,
		wait:      cfg.Wait,
		onExpired: cfg.Expired,
		drop:      cfg.Drop,
		log:       cfg.Logger.With("handler", cfg.Name),
		panicLog:  lograte.New(panicLogBurst, panicLogEvery),
		errFull:   fmt.Errorf("%w: %q", mailbox.ErrFull, cfg.Name),
		slots:     mailbox.NewSlots(cfg.Mailbox, cfg.Overflow),
		stopped:   &incarnation[M]{},
		abort:     make(chan struct{}),
		stopping:  make(chan struct{}),
		sup:       supervisor{policy: cfg.Restart},
	}
	a.exec = newExecutor(a, cfg.Mode, cfg.MaxConcurrency, cfg.Mailbox)
	a.inline, _ = a.exec.(*inline[K, M])
	fn, err := a.build()
	if err != nil {
		return nil, fmt.Errorf("velo: actor %q: %w", cfg.Name, err)
	}
	a.cur.Store(&incarnation[M]{fn: fn})
	return a, nil
}

// Tell hands msg to the actor. key matters in Ordered mode only.
//
// ctx is passed to the handler as is. While the actor is full, a Block
// actor makes Tell wait for room until ctx ends (ctx.Err()); a Reject actor
// returns an error wrapping mailbox.ErrFull at once. Once the actor is
// stopped, Tell returns an error wrapping ErrStopped. Outside Inline
// mode, a message taken whose ctx has ended by the time its turn comes is
// not run but expired (see Config.Expired).
//
// In Inline mode the message runs before Tell returns, on the caller's
// goroutine; if a restart is pending, Tell waits for it until ctx ends. In
// the other modes Tell returns once the message is queued or started.
func (a *Actor[K, M]) Tell(ctx context.Context, key K, msg M) error {
	if err := a.admit(ctx, msg); err != nil {
		return err
	}
	if a.inline != nil {
		return a.inline.submit(ctx, key, msg)
	}
	return a.exec.submit(ctx, key, msg)
}

// TellHere is Tell, except that an uncapped Spawn actor with no message
// queued runs msg on the calling goroutine, before TellHere returns, as
// Inline mode does; ran reports whether it did. It is for a caller that
// sees to it that a message which runs long does not hold anything else
// up (the messenger moves a connection's reading to another goroutine).
// The other modes, and a pool with messages queued, take msg as Tell
// does.
func (a *Actor[K, M]) TellHere(ctx context.Context, key K, msg M) (ran bool, err error) {
	p, ok := a.exec.(*pool[K, M])
	if !ok || !p.idleQueue() {
		return false, a.Tell(ctx, key, msg)
	}
	if err := a.admit(ctx, msg); err != nil {
		return false, err
	}
	here := inline[K, M]{a: a}
	if err := here.submit(ctx, key, msg); err != nil {
		return false, err
	}
	return true, nil
}

// admit takes a unit of work and a slot for msg, waiting for the slot as
// the overflow policy says; the error is Tell's.
func (a *Actor[K, M]) admit(ctx context.Context, msg M) error {
	// The unit is taken before the slot so that Stop, which closes slots
	// and then waits for work, cannot miss a message that got a slot.
	a.work.add()
	var err error
	if !a.slots.TryAcquire() {
		if a.wait != nil && a.slots.Policy() == mailbox.Block && !a.slots.Closed() {
			a.wait(msg, true)
			err = a.slots.Acquire(ctx)
			a.wait(msg, false)
		} else {
			err = a.slots.Acquire(ctx)
		}
	}
	if err != nil {
		a.work.done()
		return a.refused(ctx, err)
	}
	return nil
}

func (a *Actor[K, M]) refused(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, mailbox.ErrFull):
		a.log.LogAttrs(ctx, slog.LevelDebug, "velo: message refused: mailbox full")
		return a.errFull
	case errors.Is(err, mailbox.ErrClosed):
		// err is set before slots is closed.
		return a.Err()
	}
	return err
}

// Stop stops the actor: Tell refuses new messages from now on (with an
// error wrapping ErrStopped), and Stop waits until the messages already
// accepted have finished and the actor's goroutines have exited, then
// returns nil.
//
// If ctx ends first, the messages not yet started are handed to
// Config.Drop and Stop returns ctx.Err(); the goroutines still running a
// handler exit as soon as it returns (a later Stop call waits for them).
//
// Stop is idempotent. After the supervisor stopped the actor, Stop only
// waits for what still runs.
func (a *Actor[K, M]) Stop(ctx context.Context) error {
	a.mu.Lock()
	if a.err == nil {
		a.err = fmt.Errorf("%w: %q: Stop called", ErrStopped, a.name)
	}
	first := !a.stopAsked
	a.stopAsked = true
	reason := a.err
	a.mu.Unlock()
	a.slots.Close()
	if first {
		close(a.stopping)
		a.exec.stop()
	}
	if err := a.work.wait(ctx); err != nil {
		a.halt(reason)
		return err
	}
	return nil
}

// Err returns nil while the actor takes messages, and the reason it stopped
// (wrapping ErrStopped) once Stop was called or the supervisor stopped it.
func (a *Actor[K, M]) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Restarts returns how many times the supervisor restarted the handler.
func (a *Actor[K, M]) Restarts() int { return int(a.restarts.Load()) }

// Refused returns how many Tells were refused because the actor was full
// (Reject overflow only).
func (a *Actor[K, M]) Refused() uint64 { return a.slots.Refused() }

// Depth returns how many messages the actor holds now, queued or
// running.
func (a *Actor[K, M]) Depth() int { return a.slots.Len() }

// Capacity returns the mailbox size: the most messages it holds at once.
func (a *Actor[K, M]) Capacity() int { return a.slots.Cap() }

// Expired returns how many accepted messages were not run because their
// ctx had ended by the time their turn came (see Config.Expired).
func (a *Actor[K, M]) Expired() uint64 { return a.expired.Load() }
