package actor

import "context"

// executor runs the messages an actor has admitted. Tell takes a slot and
// a unit of work for a message, then submits it; the executor runs it on
// the goroutine its mode calls for, through the actor's deliver (or, for
// Inline, at once), and each message ends through one of the actor's
// outcomes (settle, expire, drop), which give the slot and unit back.
//
// New picks the executor from Config.Mode and MaxConcurrency, once:
//
//   - inline: Mode Inline, on the goroutine that calls Tell;
//   - pool: Mode Spawn without a cap, on a pool of workers that grows as
//     handlers block and shrinks as workers stay idle;
//   - capped: Mode Spawn with MaxConcurrency, on at most that many
//     workers, which exit once the queue is empty;
//   - keyed: Mode Ordered, on one drainer per key with pending messages.
//
// All methods may be called concurrently.
type executor[K comparable, M any] interface {
	// submit runs or queues msg, which holds a slot and a unit of work.
	// Only inline fails, for a message it could not run (the slot and
	// unit are then given back); the others return nil.
	submit(ctx context.Context, key K, msg M) error
	// drain removes the messages still queued, appends them to dst in
	// order and returns dst: the actor halted and drops them.
	drain(dst []entry[M]) []entry[M]
	// stop is called once, by the first Stop: goroutines that linger in
	// case more work comes exit now, and from now on as soon as they are
	// idle.
	stop()
}

// entry is a message waiting in a queue, with the ctx its Tell passed.
type entry[M any] struct {
	ctx context.Context
	msg M
}

func newExecutor[K comparable, M any](a *Actor[K, M], mode Mode, maxConc, capacity int) executor[K, M] {
	switch {
	case mode == Inline:
		return &inline[K, M]{a: a}
	case mode == Ordered:
		return newKeyed(a, capacity)
	case maxConc > 0:
		return &capped[K, M]{a: a, limit: maxConc}
	}
	return newPool(a)
}
