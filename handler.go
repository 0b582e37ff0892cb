package velo

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/velo-messenger/velo/actor"
	"github.com/velo-messenger/velo/internal/mpcheck"
	"github.com/velo-messenger/velo/mailbox"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// Context describes the message a handler is running for.
type Context struct {
	// Msg is the messenger that received the message; a handler may use it
	// to call other instances, the sender included.
	Msg *Messenger
	// Sender is the instance that sent the message.
	Sender peer.ID
	// Identity is who the sender's connection authenticated it as: the
	// verified client certificate's URI SAN, else its DNS SAN, else its
	// subject CN, under mutual TLS; "unix:uid=N" over a Unix socket; ""
	// when the connection authenticates nobody. Unlike Sender, which the
	// peer states, Identity is proven (see docs/security.md).
	Identity string
	// Handler is the name the message was sent to.
	Handler string
	// Payload is the message body as sent. It belongs to the handler.
	Payload []byte
	// Headers are the sender's headers, nil when it set none.
	Headers map[string]string
}

// TypedContext is the Context of a typed handler, with the payload decoded
// from MessagePack into Input.
type TypedContext[I any] struct {
	Context
	Input I
}

// invokeFunc is what every handler kind is reduced to.
type invokeFunc func(ctx context.Context, c *Context) ([]byte, error)

// Handler is a named handler ready to be registered with
// Messenger.RegisterHandler. Make one with AMHandler, UnaryHandler or
// TypedUnaryHandler (or their Factory forms) and the builder's Build.
type Handler struct {
	name     string
	factory  func() invokeFunc
	mode     actor.Mode
	mailbox  int
	overflow mailbox.Policy
	maxConc  int
	restart  actor.RestartPolicy
	reuse    bool  // ReusePayload
	shape    shape // for _describe
	err      error // a problem found while building, reported by RegisterHandler
}

// Name is the name callers use.
func (h *Handler) Name() string { return h.name }

// HandlerBuilder configures a Handler. Its methods return the builder so
// that calls chain; Build returns the Handler.
type HandlerBuilder struct {
	h Handler
}

func newHandlerBuilder(name string, factory func() invokeFunc, err error) *HandlerBuilder {
	return &HandlerBuilder{h: Handler{
		name:     name,
		factory:  factory,
		mode:     actor.Spawn,
		overflow: mailbox.Block,
		restart:  actor.DefaultRestartPolicy(),
		err:      err,
	}}
}

// Spawn runs messages on worker goroutines (the default): quick handlers run
// back to back on one worker, and a slow message never delays the next one,
// which another worker takes.
func (b *HandlerBuilder) Spawn() *HandlerBuilder { b.h.mode = actor.Spawn; return b }

// Inline runs each message on the connection's receive goroutine, with no
// hop: the lowest latency, for handlers that finish in microseconds and
// never block. An inline handler must not wait on a call to the instance
// that sent it the message: the response would arrive on the very
// goroutine that is waiting, and the call could only end by its deadline.
func (b *HandlerBuilder) Inline() *HandlerBuilder { b.h.mode = actor.Inline; return b }

// Ordered runs the messages of each sender one at a time, in the order
// they were sent; messages of different senders run in parallel.
func (b *HandlerBuilder) Ordered() *HandlerBuilder { b.h.mode = actor.Ordered; return b }

// Mailbox sets how many messages may be queued or running at once
// (default 1024). When it is full, the connection's receive path waits
// for room, which slows the senders down, unless RejectWhenFull is set.
func (b *HandlerBuilder) Mailbox(n int) *HandlerBuilder {
	if n < 1 {
		b.h.err = errors.Join(b.h.err, fmt.Errorf("%w: %q: mailbox size %d, want at least 1", ErrInvalidHandler, b.h.name, n))
	}
	b.h.mailbox = n
	return b
}

// RejectWhenFull makes a full mailbox answer new requests at once with
// ErrBusy instead of making the receive path wait. Refusals are counted
// and logged.
func (b *HandlerBuilder) RejectWhenFull() *HandlerBuilder { b.h.overflow = mailbox.Reject; return b }

// Concurrency caps how many messages of a Spawn handler run at once; the
// others wait in the mailbox. Zero (the default) means no cap beyond the
// mailbox size.
func (b *HandlerBuilder) Concurrency(n int) *HandlerBuilder {
	if n < 0 {
		b.h.err = errors.Join(b.h.err, fmt.Errorf("%w: %q: concurrency %d, want >= 0", ErrInvalidHandler, b.h.name, n))
	}
	b.h.maxConc = n
	return b
}

// Restart sets the supervision policy: how many panics the handler
// survives within a window, and the backoff before each restart. The
// default restarts it after every panic, at once. A handler made with a
// Factory constructor is re-created from its factory on restart.
func (b *HandlerBuilder) Restart(p actor.RestartPolicy) *HandlerBuilder {
	if err := p.Validate(); err != nil {
		b.h.err = errors.Join(b.h.err, fmt.Errorf("%w: %q: %w", ErrInvalidHandler, b.h.name, err))
	}
	b.h.restart = p
	return b
}

// ReusePayload lets velo reuse the memory of the handler's large
// payloads: one that came in chunks (see Messenger.ReleasePayload) is kept
// once the handler has returned and its response has been sent, and a
// later large payload of a fitting size is received into it, instead of
// into fresh memory that the system must fault in and zero (see
// docs/streams.md, "Reusing payload memory"). The handler, and the
// interceptors it runs under, must then not keep its Context's Payload,
// or any slice of it, past its return; returning it, or part of it, as
// the response is fine. Such a payload must not be given to
// Messenger.ReleasePayload, which ignores it. Without ReusePayload a
// handler owns its Payload.
func (b *HandlerBuilder) ReusePayload() *HandlerBuilder {
	b.h.reuse = true
	return b
}

// Build returns the configured Handler.
func (b *HandlerBuilder) Build() *Handler {
	h := b.h
	return &h
}

// AMHandler makes an active-message handler: it returns only an error.
// Called with AMSend its outcome is not reported; called with AMSync (or
// Unary, which then receives an empty result) the caller waits for it.
func AMHandler(name string, fn func(ctx context.Context, c *Context) error) *HandlerBuilder {
	return AMHandlerFactory(name, constFactory(fn))
}

// AMHandlerFactory is AMHandler for a stateful handler: factory is called
// at registration and again after each restart, and the function it
// returns handles the messages.
func AMHandlerFactory(name string, factory func() func(ctx context.Context, c *Context) error) *HandlerBuilder {
	b := newHandlerBuilder(name, func() invokeFunc {
		fn := factory()
		return func(ctx context.Context, c *Context) ([]byte, error) { return nil, fn(ctx, c) }
	}, nilCheck(name, factory))
	b.h.shape.kind = system.KindAM
	return b
}

// UnaryHandler makes a request-response handler on raw bytes. Called with
// AMSend or AMSync it runs and its result is discarded.
func UnaryHandler(name string, fn func(ctx context.Context, c *Context) ([]byte, error)) *HandlerBuilder {
	return UnaryHandlerFactory(name, constFactory(fn))
}

// UnaryHandlerFactory is UnaryHandler for a stateful handler (see
// AMHandlerFactory).
func UnaryHandlerFactory(name string, factory func() func(ctx context.Context, c *Context) ([]byte, error)) *HandlerBuilder {
	b := newHandlerBuilder(name, func() invokeFunc { return factory() }, nilCheck(name, factory))
	b.h.shape.kind = system.KindUnary
	return b
}

// TypedUnaryHandler makes a request-response handler on typed values: the
// payload is decoded from MessagePack into I, and the O returned is encoded
// back. A payload that does not decode is answered with ErrBadPayload
// without calling fn, and so is one whose decoded value would hold more
// than 12 bytes per payload byte, plus 64 KiB: it is refused before it is
// decoded (an 8 MiB list of empty strings would make a []string of
// 128 MiB). Plain structs, strings, numbers and byte slices stay well
// within it; long lists of one-byte values decoded into interfaces, maps
// of one-letter keys, or nils that become large structs in a slice do not.
func TypedUnaryHandler[I, O any](name string, fn func(ctx context.Context, c *TypedContext[I]) (O, error)) *HandlerBuilder {
	return TypedUnaryHandlerFactory(name, constFactory(fn))
}

// TypedUnaryHandlerFactory is TypedUnaryHandler for a stateful handler
// (see AMHandlerFactory).
func TypedUnaryHandlerFactory[I, O any](name string, factory func() func(ctx context.Context, c *TypedContext[I]) (O, error)) *HandlerBuilder {
	b := newHandlerBuilder(name, func() invokeFunc {
		fn := factory()
		return func(ctx context.Context, c *Context) ([]byte, error) {
			tc := TypedContext[I]{Context: *c}
			if err := decodePayload(c.Payload, &tc.Input); err != nil {
				return nil, newError(CodeBadPayload, c.Handler, err, "decoding %s: %v", typeName[I](), err)
			}
			out, err := fn(ctx, &tc)
			if err != nil {
				return nil, err
			}
			b, err := mpcheck.Marshal(out)
			if err != nil {
				return nil, newError(CodeBadPayload, c.Handler, err, "encoding %s: %v", typeName[O](), err)
			}
			return b, nil
		}
	}, nilCheck(name, factory))
	b.h.shape = shape{kind: system.KindTyped, in: reflect.TypeFor[I](), out: reflect.TypeFor[O]()}
	return b
}

func constFactory[F any](fn F) func() F {
	if reflect.ValueOf(&fn).Elem().IsNil() {
		return nil
	}
	return func() F { return fn }
}

func nilCheck[F any](name string, factory func() F) error {
	if factory == nil {
		return fmt.Errorf("%w: %q: nil function", ErrInvalidHandler, name)
	}
	return nil
}

func typeName[T any]() string { return reflect.TypeFor[T]().String() }

// decodePayload decodes a payload that came from the network into v. An
// empty payload is v's zero value: a call made without Payload to a
// handler whose input is struct{} (or any type whose zero value is valid)
// runs, rather than fail to decode nothing.
func decodePayload[T any](b []byte, v *T) error {
	if len(b) == 0 {
		var zero T
		*v = zero
		return nil
	}
	return mpcheck.Unmarshal(b, v)
}
