package actor

import (
	"context"
	"sync"

	"github.com/velo-messenger/velo/mailbox"
)

// capped runs a Spawn actor's messages on at most limit workers at once
// (Config.MaxConcurrency). The others wait in fifo. A worker is started
// when a message is queued while fewer than limit run, and exits as soon
// as the queue is empty, so an idle capped actor owns no goroutine.
type capped[K comparable, M any] struct {
	a     *Actor[K, M]
	limit int

	mu      sync.Mutex // guards the fields below
	fifo    mailbox.Ring[entry[M]]
	workers int // running workers
}

// submit queues msg and starts a worker if fewer than limit run.
func (c *capped[K, M]) submit(ctx context.Context, _ K, msg M) error {
	c.mu.Lock()
	c.fifo.Push(entry[M]{ctx, msg})
	start := c.workers < c.limit
	if start {
		c.workers++
		c.a.work.add()
	}
	c.mu.Unlock()
	if start {
		go c.run()
	}
	return nil
}

// run is a worker: it runs queued messages until the queue is empty, then
// exits.
func (c *capped[K, M]) run() {
	exited := false
	defer func() {
		if !exited {
			// A handler called runtime.Goexit; a fresh worker takes
			// over this one's place and unit.
			go c.run()
			return
		}
		c.a.work.done()
	}()
	for {
		c.mu.Lock()
		e, ok := c.fifo.Pop()
		if !ok {
			c.workers--
			c.mu.Unlock()
			exited = true
			return
		}
		c.mu.Unlock()
		c.a.deliver(e.ctx, e.msg)
	}
}

func (c *capped[K, M]) drain(dst []entry[M]) []entry[M] {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fifo.Drain(dst)
}

func (*capped[K, M]) stop() {}
