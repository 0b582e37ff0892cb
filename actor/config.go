package actor

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/velo-messenger/velo/mailbox"
)

// DefaultMailbox is the capacity used when Config.Mailbox is zero.
const DefaultMailbox = 1024

// Config describes an actor. Its zero value is not usable as is: Factory
// is required, and the zero Restart policy stops the actor at its first
// panic (pass DefaultRestartPolicy() to keep it alive).
type Config[K comparable, M any] struct {
	// Name identifies the actor in errors and logs.
	Name string
	// Mode picks where messages run: Spawn (the zero value), Inline or
	// Ordered.
	Mode Mode
	// Mailbox is the capacity, in messages: how many may be accepted and
	// not yet finished (queued plus running), across all keys. Zero: 1024
	// (DefaultMailbox).
	Mailbox int
	// Overflow says what Tell does when the capacity is used up. Block (the
	// zero value) makes Tell wait for room, which pushes back onto the
	// receive path; Reject makes Tell return an error wrapping
	// mailbox.ErrFull at once, and counts it (see Actor.Refused).
	Overflow mailbox.Policy
	// MaxConcurrency, for Spawn only, caps how many messages run at once;
	// the others wait in the mailbox. Zero: no cap beyond Mailbox.
	MaxConcurrency int
	// Restart tells the supervisor what to do after a panic. The zero value
	// allows no restart; see RestartPolicy and DefaultRestartPolicy.
	Restart RestartPolicy
	// Factory builds the handler. New calls it once, and the supervisor
	// again at each restart; a stateful handler keeps its state in the
	// returned closure, so a restart starts from fresh state. In Spawn mode
	// the handler runs concurrently with itself and must be safe for that.
	// Required.
	Factory func() func(ctx context.Context, msg M)
	// OnPanic, if set, is called for each message whose handler panicked,
	// on the goroutine that ran it, after the panic was recovered and
	// after the supervisor decided on a restart or a stop, so that a
	// message told once OnPanic returned never runs on the failed handler.
	// A panic in OnPanic is recovered and logged.
	OnPanic func(msg M, err *PanicError)
	// After, if set, is called for each message whose handler returned,
	// on the goroutine that ran it, once the message's room in the mailbox
	// is free again: the place to answer a sender, who may then send its
	// next message without finding the mailbox full. OnPanic is called at
	// the same point for a message that panicked.
	After func(msg M)
	// Wait, if set, is called by Tell on its goroutine when it begins to
	// wait for room in a full Block mailbox (waiting true) and when that
	// wait ends (false), with the message being told. It costs nothing
	// while there is room. velo uses it to tell a connection whose receive
	// path waits on a handler from one that went silent.
	Wait func(msg M, waiting bool)
	// Expired, if set, receives each accepted message whose ctx had ended
	// (the caller gave up, or its deadline passed) by the time its turn
	// came, with ctx.Err(), instead of the handler: a message that waited
	// in a queue (behind MaxConcurrency, behind its key in Ordered mode,
	// or for a worker), or was told with a ctx already done. Inline mode
	// runs each message at its Tell and does not check. It runs on the
	// goroutine that would have run the handler, once
	// the message's room in the mailbox is free again, like After; After
	// and OnPanic are not called for such a message. A panic in it is
	// recovered and logged. When Expired is nil such messages are only
	// counted (see Actor.Expired) and their room freed.
	Expired func(msg M, err error)
	// Drop, if set, receives each accepted message that will never run
	// because the actor stopped first (the supervisor gave up, or Stop's
	// ctx ended before the queue drained), with the stop reason, which
	// wraps ErrStopped. It runs on whichever goroutine stops the actor (the
	// one whose panic exhausted the restart budget, or Stop's caller) or on
	// the actor goroutine that held the message; a panic in it is recovered
	// and logged. When Drop is nil such messages are logged.
	Drop func(msg M, err error)
	// Logger receives the actor's own log lines (panics, restarts, stops).
	// Nil: discard; the actor never writes to stderr on its own.
	Logger *slog.Logger
}

// validate checks c and returns it with defaults filled in.
func (c Config[K, M]) validate() (Config[K, M], error) {
	fail := func(format string, args ...any) (Config[K, M], error) {
		return c, fmt.Errorf("velo: actor %q: "+format, append([]any{c.Name}, args...)...)
	}
	switch {
	case c.Factory == nil:
		return fail("nil Factory")
	case !c.Mode.valid():
		return fail("undefined %v", c.Mode)
	case c.Mailbox < 0:
		return fail("negative Mailbox %d", c.Mailbox)
	case !c.Overflow.Valid():
		return fail("undefined overflow %v", c.Overflow)
	case c.MaxConcurrency < 0:
		return fail("negative MaxConcurrency %d", c.MaxConcurrency)
	case c.MaxConcurrency > 0 && c.Mode != Spawn:
		return fail("MaxConcurrency applies to Spawn only, not %v", c.Mode)
	}
	if err := c.Restart.Validate(); err != nil {
		return fail("%w", err)
	}
	if c.Mailbox == 0 {
		c.Mailbox = DefaultMailbox
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
