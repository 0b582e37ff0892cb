package actor

import (
	"context"
	"sync"
	"time"

	"github.com/velo-messenger/velo/mailbox"
)

// idleWorker is how long a pool worker waits for another message before it
// exits.
const idleWorker = time.Second

// keptQueue is the largest queue ring, in entries, that the pool keeps once
// its queue is empty again.
const keptQueue = 256

// pool runs an uncapped Spawn actor's messages. It queues them in fifo and
// runs them on workers that grow in number as handlers block. The rule
// that keeps a message from ever waiting for a running handler: while fifo
// is not empty, at least one worker that is not running a handler is on
// its way to take from it (a "starting" worker: one just started, or woken
// from idle). So a Tell starts or wakes a worker only when none is
// starting, and a starting worker that takes a message and leaves others
// queued starts or wakes the next one before it runs its own.
//
// Handlers that return quickly thus run one after another on the worker
// that is already running, a burst of messages costs one goroutine hand-off
// rather than one per message, and a handler that blocks gets the others
// taken by the next worker. A worker with nothing to do waits in the idle
// list, from one to two idleWorker periods, in case more work comes.
type pool[K comparable, M any] struct {
	a *Actor[K, M]

	mu       sync.Mutex // guards the fields below and the workers' fields
	fifo     mailbox.Ring[entry[M]]
	starting int         // workers on their way to fifo
	idle     worker      // sentinel of the idle workers' list
	closed   bool        // stop was called: workers exit instead of idling
	reaper   *time.Timer // runs reap while workers are idle
	reaping  bool        // reaper is armed
	epoch    uint64      // reap's runs
}

// worker is a pool worker's link to its pool. Its fields are guarded by the
// pool's mu.
type worker struct {
	wake       chan struct{} // capacity 1: go and take; closed: exit
	prev, next *worker       // neighbours in the idle list; nil when not in it
	starting   bool          // woken or started, and not yet at the queue
	since      uint64        // the reaper's epoch when it went idle
}

func newPool[K comparable, M any](a *Actor[K, M]) *pool[K, M] {
	p := &pool[K, M]{a: a}
	p.idle.prev, p.idle.next = &p.idle, &p.idle
	return p
}

// submit queues msg and makes sure a worker is coming to take it.
func (p *pool[K, M]) submit(ctx context.Context, _ K, msg M) error {
	p.mu.Lock()
	p.fifo.Push(entry[M]{ctx, msg})
	if p.starting == 0 {
		p.kickLocked()
	}
	p.mu.Unlock()
	return nil
}

// idleQueue reports whether no message is queued: one told now would be
// the next to start.
func (p *pool[K, M]) idleQueue() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fifo.Len() == 0
}

// kickLocked wakes the idle worker that ran last (its stack is the warmest),
// or starts a new one if none is idle. mu must be held.
func (p *pool[K, M]) kickLocked() {
	p.starting++
	if w := p.idle.next; w != &p.idle {
		p.unlinkLocked(w)
		w.starting = true
		w.wake <- struct{}{} // never blocks: an idle worker's wake is empty
		return
	}
	p.a.work.add() // the worker's own unit
	go p.run(&worker{wake: make(chan struct{}, 1), starting: true})
}

func (p *pool[K, M]) unlinkLocked(w *worker) {
	w.prev.next = w.next
	w.next.prev = w.prev
	w.prev, w.next = nil, nil
}

// run is a worker: it takes messages from fifo and runs them until the
// queue is empty, then waits in the idle list until it is woken, or told to
// exit by the reaper or by stop.
func (p *pool[K, M]) run(w *worker) {
	defer p.a.work.done()
	for {
		p.mu.Lock()
		e, ok := p.fifo.Pop()
		if w.starting {
			w.starting = false
			p.starting--
		}
		if ok {
			if p.starting == 0 && p.fifo.Len() > 0 {
				p.kickLocked() // someone must come for the rest
			}
			p.mu.Unlock()
			p.a.deliver(e.ctx, e.msg)
			continue
		}
		if p.fifo.Cap() > keptQueue {
			p.fifo = mailbox.Ring[entry[M]]{} // a burst's ring goes once the burst is over
		}
		if p.closed {
			p.mu.Unlock()
			return
		}
		// Nothing queued: wait in the idle list, most recent first. No
		// timer per worker: the reaper ends those idle for too long.
		w.since = p.epoch
		w.prev, w.next = &p.idle, p.idle.next
		p.idle.next.prev = w
		p.idle.next = w
		if !p.reaping {
			p.reaping = true
			if p.reaper == nil {
				p.reaper = time.AfterFunc(idleWorker, p.reap)
			} else {
				p.reaper.Reset(idleWorker)
			}
		}
		p.mu.Unlock()
		if _, ok := <-w.wake; !ok {
			return
		}
	}
}

// reap runs every idleWorker while workers are idle: it ends those that
// have been idle since before its previous run, so an idle worker lives
// between one and two idleWorker periods.
func (p *pool[K, M]) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	// The list is most recently idle first: the stale workers are at its
	// back.
	for w := p.idle.prev; w != &p.idle && w.since+1 < p.epoch; w = p.idle.prev {
		p.unlinkLocked(w)
		close(w.wake)
	}
	if p.idle.next != &p.idle && !p.closed {
		p.reaper.Reset(idleWorker)
		return
	}
	p.reaping = false
}

// stop ends the idle workers, and those that go idle from now on.
func (p *pool[K, M]) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for w := p.idle.next; w != &p.idle; w = p.idle.next {
		p.unlinkLocked(w)
		close(w.wake)
	}
	if p.reaper != nil {
		p.reaper.Stop()
	}
	p.reaping = false
}

func (p *pool[K, M]) drain(dst []entry[M]) []entry[M] {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fifo.Drain(dst)
}
