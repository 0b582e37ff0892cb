// Package mailbox holds the parts of velo's handler mailboxes: Slots, which
// bounds how many messages a mailbox holds and applies its overflow Policy,
// and Ring, the FIFO queue the messages wait in. An actor (package actor)
// takes a slot for each message it accepts, queues the message in a Ring
// of its own choosing (one for the whole actor, or one per key), and
// releases the slot once the message has run.
//
// The two are apart because the count and the queue do not line up: a
// message that runs at once, on the sender's goroutine or on an idle
// worker, holds a slot without ever being queued, and an actor that keeps
// per-key order has many queues under one capacity.
//
// Slots gives the overflow policy chosen at construction:
//
//   - Block makes a sender wait for a slot (backpressure travels up to
//     whoever sends), until its context ends or the slots close. Waiting
//     senders queue in arrival order, and a release hands its slot to the
//     first of them, so a sender that keeps coming back cannot overtake
//     one that waits.
//   - Reject makes a sender fail at once with ErrFull, and counts the
//     refusal (Slots.Refused).
//
// Close makes every later take fail with ErrClosed and wakes the senders
// waiting, while the slots already held stay held until released: the
// owner drains what it accepted. Taking and releasing a slot while nobody
// waits is one atomic operation each (TryAcquire, Release).
package mailbox
