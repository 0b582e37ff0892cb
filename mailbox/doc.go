// Package mailbox provides a bounded multi-producer queue with an explicit
// overflow policy, and the policies and errors of velo's handler mailboxes:
// an actor's capacity (actor.Config.Mailbox, Overflow) follows the same
// Block and Reject rules and fails with the same ErrFull and ErrClosed,
// though it counts its messages without a Mailbox in front of it.
//
// A Mailbox wraps a buffered channel, so a push or pop that does not have
// to wait costs about as much as a channel operation. What the bare channel
// lacks, the Mailbox adds:
//
//   - an overflow policy chosen at construction: Block makes a producer wait
//     for room (backpressure travels up to whoever produces), Reject makes it
//     fail at once with ErrFull and counts the refusal (see Refused);
//   - waiting pushers and poppers give up when their context ends;
//   - Close is safe while producers are pushing: a Push that races Close
//     either enqueues its value or returns ErrClosed, never panics, and
//     once Close has returned no value can be enqueued any more;
//   - after Close, Pop still hands out what was queued, then reports
//     ErrClosed, so a consumer can drain before it exits.
//
// Any number of goroutines may push and pop at once. Values come out in the
// order they went in.
package mailbox
