// Package actor runs velo's handlers as supervised actors over bounded
// mailboxes.
//
// An Actor takes messages through Tell and runs each one on a handler that
// its factory built. Config picks the rest.
//
// # Dispatch
//
// The Mode says where a message runs:
//
//   - Spawn: on a pool of worker goroutines, so messages run in parallel.
//     With MaxConcurrency set, messages queue and at most that many
//     workers drain them. The handler must be safe for concurrent use.
//   - Inline: on the goroutine that calls Tell, before Tell returns. This
//     is the cheapest mode, and the right one only for handlers that never
//     block, since they stall whatever calls Tell (in velo, the receive
//     path of a connection).
//   - Ordered: messages with the same key run one at a time, in the order
//     of their Tell calls (calls ordered by happens-before, from any
//     goroutines); different keys run in parallel.
//
// A new actor owns no goroutine. Spawn runs messages on worker goroutines,
// never on the caller's, and never makes a message wait for a running
// handler: while messages are queued, a worker that is not running a
// handler is always on its way to take the next one (an idle one woken, or
// a new one). Quick handlers thus run back to back on the worker already
// running, at no goroutine hand-off per message, and a handler that blocks
// gets the messages behind it taken by another worker. An uncapped worker
// waits up to a second for more work before it exits, so bursts reuse warm
// stacks and an idle actor soon owns nothing again. A capped
// Spawn actor runs up to MaxConcurrency workers; Ordered starts one drainer
// per key that has pending messages. Capped workers and drainers exit as
// soon as their queue is empty, and an idle key leaves nothing behind, so
// memory does not grow with the number of keys ever seen. Stop ends every
// worker.
//
// # Capacity and overflow
//
// Config.Mailbox bounds the messages accepted and not yet finished (queued
// plus running, across all keys). When it is reached, an actor with the
// Block overflow makes Tell wait for room, so a slow handler slows down
// whoever sends to it, instead of queueing without bound; an actor with the
// Reject overflow makes Tell fail at once with an error wrapping
// mailbox.ErrFull, and counts the refusal (Actor.Refused). The count and
// the queues are package mailbox's Slots and Ring.
//
// # Outcomes
//
// Every message given to Tell has exactly one outcome:
//
//   - Tell returns an error: the actor is full (Reject), the caller's ctx
//     ended while Tell waited, or the actor is stopped (ErrStopped);
//   - the handler runs it and returns;
//   - the handler panics on it: Config.OnPanic receives it with a
//     *PanicError carrying the panic value and stack;
//   - its ctx ended before its turn came (it waited in a queue, or was
//     told with a ctx already done; not in Inline mode, where the turn is
//     the Tell): the handler is not run, and Config.Expired receives it
//     with ctx.Err() (Actor.Expired counts them);
//   - the actor stops before running it: Config.Drop receives it with the
//     stop reason.
//
// So a caller of the actor can always be answered.
//
// # Supervision
//
// A panic in a handler is recovered and never reaches the process. It is
// logged at Error with its stack, at most ten lines at once and then one
// a second per actor, the next line written saying how many were left
// out. The supervisor applies Config.Restart: it either restarts, by
// calling the factory again (after a backoff, if set; messages that arrive
// meanwhile wait), or stops the actor, after which Err reports why, queued
// messages go to Drop and Tell fails with an error wrapping ErrStopped. A
// factory that panics during a restart stops the actor too. Restart
// decisions belong to the supervisor alone: a handler cannot restart or
// stop its actor.
//
// In Spawn mode several messages may run on one handler when it panics;
// those panics count as one failure, since the handler is replaced once.
//
// # Stopping
//
// Stop refuses new messages, waits for the accepted ones to finish and for
// the actor's goroutines to exit. If its ctx ends first, the messages not
// yet started go to Drop. No lock is held while user code (handler,
// factory, OnPanic, Drop) runs.
package actor
