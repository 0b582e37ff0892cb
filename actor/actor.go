package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

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
// handler panics on it and Config.OnPanic gets it; or the actor stops
// before running it and Config.Drop gets it.
type Actor[K comparable, M any] struct {
	name    string
	mode    Mode
	maxConc int
	factory func() func(context.Context, M)
	onPanic func(M, *PanicError)
	after   func(M)
	wait    func(M, bool)
	drop    func(M, error)
	log     *slog.Logger
	errFull error // returned by Tell when full under Reject

	// slots holds one token per accepted message not yet finished; its
	// capacity is Config.Mailbox and its policy Config.Overflow. Closing
	// it is how the actor stops admitting messages: a Tell that got a token
	// did so before the close, and is counted by work.
	slots *mailbox.Slots
	// work counts accepted messages not finished plus the actor's own
	// goroutines (drainers, restart timer); Stop waits for it to reach zero.
	// An uncapped Spawn goroutine runs on its message's unit.
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

	mu        sync.Mutex // guards the fields below, and cur's transitions
	sup       supervisor
	err       error // why the actor takes no more messages; set once
	dropErr   error // what Drop is given once abort is closed
	halted    bool
	stopAsked bool

	qmu     sync.Mutex             // guards the queues below
	fifo    mailbox.Ring[entry[M]] // Spawn: messages waiting for a worker
	workers int                    // Spawn with MaxConcurrency: running workers
	// The uncapped Spawn pool (see enqueueSpawn).
	starting   int         // workers on their way to fifo
	idle       worker      // sentinel of the idle workers' list
	idleClosed bool        // Stop was called: workers exit instead of idling
	reaper     *time.Timer // runs reap while workers are idle
	reaping    bool        // reaper is armed
	epoch      uint64      // reap's runs
	keys       map[K]*mailbox.Ring[entry[M]]
	keysPeak   int                       // most keys pending at once since keys was made
	spare      []*mailbox.Ring[entry[M]] // emptied key queues kept for reuse
	// spareRoom is how many more entries the spare queues may hold between
	// them: they start with one mailbox's worth, which is as much as all
	// the queues can ever need at once.
	spareRoom int
}

// Limits on what an actor keeps once it goes idle: an uncapped Spawn
// actor's queue ring of up to keptQueue entries, and for an Ordered actor
// (see also spareRoom):
const (
	keptQueue      = 256  // entries
	maxSpareQueues = 64   // empty key queues kept
	shrinkKeys     = 1024 // a keys map that reached this size is remade once empty
)

// New validates cfg, calls cfg.Factory once, and returns the actor. No
// goroutine runs until a message arrives.
func New[K comparable, M any](cfg Config[K, M]) (*Actor[K, M], error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	a := &Actor[K, M]{
		name:     cfg.Name,
		mode:     cfg.Mode,
		maxConc:  cfg.MaxConcurrency,
		factory:  cfg.Factory,
		onPanic:  cfg.OnPanic,
		after:    cfg.After,
		wait:     cfg.Wait,
		drop:     cfg.Drop,
		log:      cfg.Logger.With("handler", cfg.Name),
		errFull:  fmt.Errorf("%w: %q", mailbox.ErrFull, cfg.Name),
		slots:    mailbox.NewSlots(cfg.Mailbox, cfg.Overflow),
		stopped:  &incarnation[M]{},
		abort:    make(chan struct{}),
		stopping: make(chan struct{}),
		sup:      supervisor{policy: cfg.Restart},
	}
	if cfg.Mode == Ordered {
		a.keys = make(map[K]*mailbox.Ring[entry[M]])
		// A key queue never needs more than Mailbox entries, so its
		// ring never grows past the next power of two.
		a.spareRoom = max(4, 1<<bits.Len(uint(cfg.Mailbox-1)))
	}
	a.idle.prev, a.idle.next = &a.idle, &a.idle
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
// stopped, Tell returns an error wrapping ErrStopped.
//
// In Inline mode the message runs before Tell returns, on the caller's
// goroutine; if a restart is pending, Tell waits for it until ctx ends. In
// the other modes Tell returns once the message is queued or started.
func (a *Actor[K, M]) Tell(ctx context.Context, key K, msg M) error {
	// The unit is taken before the token so that Stop, which closes slots
	// and then waits for work, cannot miss a message that got a token.
	a.work.add()
	err := a.slots.TryAcquire()
	if err == mailbox.ErrFull { // TryAcquire returns it as is
		if a.wait != nil && a.slots.Policy() == mailbox.Block {
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
	switch {
	case a.mode == Inline:
		return a.runInline(ctx, msg)
	case a.mode == Ordered:
		a.enqueueKey(ctx, key, msg)
	case a.maxConc > 0:
		a.enqueueFIFO(ctx, msg)
	default:
		a.enqueueSpawn(ctx, msg)
	}
	return nil
}

// idleWorker is how long an uncapped Spawn worker waits for another message
// before it exits.
const idleWorker = time.Second

// An uncapped Spawn actor queues its messages in fifo and runs them on a
// pool of workers that grows as handlers block. The rule that keeps a
// message from ever waiting for a running handler: while fifo is not
// empty, at least one worker that is not running a handler is on its way
// to take from it (a "starting" worker: one just started, or woken from
// idle). So a Tell starts or wakes a worker only when none is starting,
// and a starting worker that takes a message and leaves others queued
// starts or wakes the next one before it runs its own.
//
// Handlers that return quickly thus run one after another on the worker
// that is already running, a burst of messages costs one goroutine hand-off
// rather than one per message, and a handler that blocks gets the others
// taken by the next worker.

// worker is an uncapped Spawn worker's link to the actor. Its fields are
// guarded by the actor's qmu.
type worker struct {
	wake       chan struct{} // capacity 1: go and take; closed: exit
	prev, next *worker       // neighbours in the idle list; nil when not in it
	starting   bool          // woken or started, and not yet at the queue
	since      uint64        // the reaper's epoch when it went idle
}

// enqueueSpawn queues a message of an uncapped Spawn actor and makes sure a
// worker is coming to take it.
func (a *Actor[K, M]) enqueueSpawn(ctx context.Context, msg M) {
	a.qmu.Lock()
	a.fifo.Push(entry[M]{ctx, msg})
	if a.starting == 0 {
		a.kickLocked()
	}
	a.qmu.Unlock()
}

// kickLocked wakes the idle worker that ran last (its stack is the warmest),
// or starts a new one if none is idle. qmu must be held.
func (a *Actor[K, M]) kickLocked() {
	a.starting++
	if w := a.idle.next; w != &a.idle {
		a.unlinkLocked(w)
		w.starting = true
		w.wake <- struct{}{} // never blocks: an idle worker's wake is empty
		return
	}
	a.work.add() // the worker's own unit
	go a.runWorker(&worker{wake: make(chan struct{}, 1), starting: true})
}

func (a *Actor[K, M]) unlinkLocked(w *worker) {
	w.prev.next = w.next
	w.next.prev = w.prev
	w.prev, w.next = nil, nil
}

// runWorker takes messages from fifo and runs them until the queue is
// empty, then waits in the idle list until it is woken, or told to exit by
// the reaper or by Stop.
func (a *Actor[K, M]) runWorker(w *worker) {
	defer a.work.done()
	for {
		a.qmu.Lock()
		e, ok := a.fifo.Pop()
		if w.starting {
			w.starting = false
			a.starting--
		}
		if ok {
			if a.starting == 0 && a.fifo.Len() > 0 {
				a.kickLocked() // someone must come for the rest
			}
			a.qmu.Unlock()
			a.deliver(e.ctx, e.msg)
			continue
		}
		if a.fifo.Cap() > keptQueue {
			a.fifo = mailbox.Ring[entry[M]]{} // a burst's ring goes once the burst is over
		}
		if a.idleClosed {
			a.qmu.Unlock()
			return
		}
		// Nothing queued: wait in the idle list, most recent first. No
		// timer per worker: the reaper ends those idle for too long.
		w.since = a.epoch
		w.prev, w.next = &a.idle, a.idle.next
		a.idle.next.prev = w
		a.idle.next = w
		if !a.reaping {
			a.reaping = true
			if a.reaper == nil {
				a.reaper = time.AfterFunc(idleWorker, a.reap)
			} else {
				a.reaper.Reset(idleWorker)
			}
		}
		a.qmu.Unlock()
		if _, ok := <-w.wake; !ok {
			return
		}
	}
}

// reap runs every idleWorker while workers are idle: it ends those that
// have been idle since before its previous run, so an idle worker lives
// between one and two idleWorker periods.
func (a *Actor[K, M]) reap() {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	a.epoch++
	// The list is most recently idle first: the stale workers are at its
	// back.
	for w := a.idle.prev; w != &a.idle && w.since+1 < a.epoch; w = a.idle.prev {
		a.unlinkLocked(w)
		close(w.wake)
	}
	if a.idle.next != &a.idle && !a.idleClosed {
		a.reaper.Reset(idleWorker)
		return
	}
	a.reaping = false
}

// closeIdle ends the idle workers, and those that go idle from now on:
// Stop's part in the uncapped Spawn pool.
func (a *Actor[K, M]) closeIdle() {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	a.idleClosed = true
	for w := a.idle.next; w != &a.idle; w = a.idle.next {
		a.unlinkLocked(w)
		close(w.wake)
	}
	if a.reaper != nil {
		a.reaper.Stop()
	}
	a.reaping = false
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

// finish releases the token and unit of a message that ran or was dropped.
func (a *Actor[K, M]) finish() {
	a.slots.Release()
	a.work.done()
}

func (a *Actor[K, M]) runInline(ctx context.Context, msg M) error {
	settled := false
	defer func() {
		if !settled { // the handler called runtime.Goexit
			a.finish()
		}
	}()
	inc, err := a.live(ctx)
	if err != nil {
		settled = true
		a.finish()
		return err
	}
	perr := a.invoke(inc, ctx, msg)
	settled = true
	a.settle(msg, perr)
	return nil
}

// deliver runs a message taken off a queue (or spawned), or drops it if the
// actor halted first, then releases it.
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
	perr := a.invoke(inc, ctx, msg)
	settled = true
	a.settle(msg, perr)
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
		a.log.Error("velo: handler panicked", "panic", perr.Value)
		if a.log.Enabled(context.Background(), slog.LevelDebug) {
			a.log.Debug("velo: handler panic stack", "stack", string(perr.Stack))
		}
		a.supervise(inc, perr)
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

// supervise decides, after inc failed, between a restart and a stop.
func (a *Actor[K, M]) supervise(inc *incarnation[M], perr *PanicError) {
	a.mu.Lock()
	if a.cur.Load() != inc {
		// inc is already being replaced (another of its messages failed
		// first, in Spawn mode) or the actor halted: this failure has
		// been answered through OnPanic and counts for nothing more.
		a.mu.Unlock()
		return
	}
	restart, delay := a.sup.failure(time.Now(), inc.proven.Load())
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
		// that will ever need a handler holds a token by now.
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

	// Messages still queued are dropped here. A message that got its token
	// just before slots closed may be queued after this sweep; the drainer
	// of its queue, which exists as long as the queue is not empty, then
	// finds the stopped incarnation and drops it.
	a.qmu.Lock()
	dropped := a.fifo.Drain(nil)
	for _, q := range a.keys {
		dropped = q.Drain(dropped)
	}
	a.qmu.Unlock()
	for _, e := range dropped {
		a.callDrop(e.msg, reason)
		a.finish()
	}
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
		a.closeIdle()
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

// enqueueFIFO queues a message of a capped Spawn actor and starts a worker
// if fewer than MaxConcurrency run.
func (a *Actor[K, M]) enqueueFIFO(ctx context.Context, msg M) {
	a.qmu.Lock()
	a.fifo.Push(entry[M]{ctx, msg})
	start := a.workers < a.maxConc
	if start {
		a.workers++
		a.work.add()
	}
	a.qmu.Unlock()
	if start {
		go a.drainFIFO()
	}
}

// drainFIFO is a capped Spawn worker: it runs queued messages until the
// queue is empty, then exits.
func (a *Actor[K, M]) drainFIFO() {
	exited := false
	defer func() {
		if !exited {
			// A handler called runtime.Goexit; a fresh worker takes
			// over this one's place and unit.
			go a.drainFIFO()
			return
		}
		a.work.done()
	}()
	for {
		a.qmu.Lock()
		e, ok := a.fifo.Pop()
		if !ok {
			a.workers--
			a.qmu.Unlock()
			exited = true
			return
		}
		a.qmu.Unlock()
		a.deliver(e.ctx, e.msg)
	}
}

// enqueueKey queues a message of an Ordered actor behind the others with
// its key, and starts the key's drainer if the key was idle.
//
// Two Tells for one key that are ordered by happens-before push in that
// order under qmu, and one drainer pops them in that order: this is the
// whole ordering guarantee.
func (a *Actor[K, M]) enqueueKey(ctx context.Context, key K, msg M) {
	a.qmu.Lock()
	q, busy := a.keys[key]
	if !busy {
		if n := len(a.spare); n > 0 {
			q = a.spare[n-1]
			a.spare = a.spare[:n-1]
			a.spareRoom += q.Cap()
		} else {
			q = new(mailbox.Ring[entry[M]])
		}
		a.keys[key] = q
		a.keysPeak = max(a.keysPeak, len(a.keys))
		a.work.add()
	}
	q.Push(entry[M]{ctx, msg})
	a.qmu.Unlock()
	if !busy {
		go a.drainKey(key, q)
	}
}

// drainKey runs the messages queued for key, one at a time, until its
// queue is empty; then it removes the key and exits. A key is in the map
// exactly while its drainer runs, so idle keys cost nothing.
func (a *Actor[K, M]) drainKey(key K, q *mailbox.Ring[entry[M]]) {
	exited := false
	defer func() {
		if !exited {
			// A handler called runtime.Goexit; a fresh drainer
			// takes over the key and this one's unit.
			go a.drainKey(key, q)
			return
		}
		a.work.done()
	}()
	for {
		a.qmu.Lock()
		e, ok := q.Pop()
		if !ok {
			delete(a.keys, key)
			a.recycle(q)
			a.qmu.Unlock()
			exited = true
			return
		}
		a.qmu.Unlock()
		a.deliver(e.ctx, e.msg)
	}
}

// recycle keeps an emptied key queue for reuse, and remakes the keys map
// once it is empty after a peak (Go maps never shrink). qmu must be held.
func (a *Actor[K, M]) recycle(q *mailbox.Ring[entry[M]]) {
	if q.Cap() <= a.spareRoom && len(a.spare) < maxSpareQueues {
		a.spare = append(a.spare, q)
		a.spareRoom -= q.Cap()
	}
	if len(a.keys) == 0 && a.keysPeak >= shrinkKeys {
		a.keys = make(map[K]*mailbox.Ring[entry[M]])
		a.keysPeak = 0
	}
}
