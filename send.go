package velo

import (
	"context"
	"maps"
	"time"

	"github.com/velo-messenger/velo/internal/mpcheck"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
)

// spec is what every send builder collects.
type spec struct {
	m       *Messenger
	kind    wire.Kind
	handler string
	target  peer.ID
	headers map[string]string
	payload []byte
	err     error // an encoding error, reported by Send

	// Routing and retries (route.go, retry.go, hedge.go); a call with
	// none of them and a target takes the direct path.
	service  string
	retry    RetryPolicy
	hasRetry bool
	idem     bool
	hedge    time.Duration
}

// direct reports whether the call goes straight to its target, once.
func (s *spec) direct() bool {
	return !s.target.IsZero() && !s.hasRetry && s.hedge == 0 && !s.m.retryByDefault
}

func (s *spec) encode(v any) {
	b, err := mpcheck.Marshal(v)
	if err != nil {
		e := newError(CodeBadPayload, s.handler, err, "encoding %T: %v", v, err)
		e.outcome = outcomeNotDelivered
		s.err = e
		return
	}
	s.payload, s.err = b, nil
}

// header adds k to a copy of the headers, so that builders copied before
// this call do not see it.
func (s *spec) header(k, v string) {
	h := make(map[string]string, len(s.headers)+1)
	maps.Copy(h, s.headers)
	h[k] = v
	s.headers = h
}

// send runs the call the spec describes.
func (s *spec) send(ctx context.Context) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	m := s.m
	if m.state.Load() >= stateClosing {
		return nil, newError(CodeShuttingDown, s.handler, nil, "instance %s is shut down", m.id.Short())
	}
	if ctx.Err() != nil {
		return nil, ctxError(ctx, s.handler)
	}
	if m.clientIntercepts(s.handler) {
		return s.intercepted(ctx, (*spec).dispatch)
	}
	return s.dispatch(ctx)
}

// dispatch runs the call: straight to its target, or routed, retried or
// hedged.
func (s *spec) dispatch(ctx context.Context) ([]byte, error) {
	m := s.m
	if !s.direct() {
		return s.call(ctx)
	}
	sess, err := m.sessionFor(ctx, s.target, s.handler)
	if err != nil {
		return nil, undelivered(err, s.handler)
	}
	req := wire.Request{Kind: s.kind, Handler: s.handler, Headers: s.headers, Payload: s.payload}
	return sess.roundTrip(ctx, &req)
}

// AMSend starts a fire-and-forget message to the named handler. Send
// returns once the message is handed to the transport; the handler's
// outcome is not reported.
func (m *Messenger) AMSend(handler string) AMSendBuilder {
	return AMSendBuilder{spec{m: m, kind: wire.KindAMSend, handler: handler}}
}

// AMSync starts a message whose Send returns once the remote handler
// finished, with its error if it failed.
func (m *Messenger) AMSync(handler string) AMSyncBuilder {
	return AMSyncBuilder{spec{m: m, kind: wire.KindAMSync, handler: handler}}
}

// Unary starts a request whose Send returns the remote handler's result as
// raw bytes.
func (m *Messenger) Unary(handler string) UnaryBuilder {
	return UnaryBuilder{spec{m: m, kind: wire.KindUnary, handler: handler}}
}

// TypedUnary starts a request whose Send decodes the remote handler's
// result from MessagePack into an R.
func TypedUnary[R any](m *Messenger, handler string) TypedUnaryBuilder[R] {
	return TypedUnaryBuilder[R]{spec{m: m, kind: wire.KindUnary, handler: handler}}
}

// AMSendBuilder is a fire-and-forget message being built. Its methods
// return a modified copy, so a partly built message can be reused.
type AMSendBuilder struct{ s spec }

// Payload sets the body to v encoded as MessagePack; an encoding error is
// returned by Send.
func (b AMSendBuilder) Payload(v any) AMSendBuilder { b.s.encode(v); return b }

// RawPayload sets the body to p as is. p must not change until Send
// returns.
func (b AMSendBuilder) RawPayload(p []byte) AMSendBuilder { b.s.payload, b.s.err = p, nil; return b }

// Instance sets the target instance.
func (b AMSendBuilder) Instance(id peer.ID) AMSendBuilder { b.s.target = id; return b }

// Service routes the message to an instance of the named service that
// offers the handler, chosen by the Balancer; an Instance set too takes
// precedence.
func (b AMSendBuilder) Service(name string) AMSendBuilder { b.s.service = name; return b }

// Retry sets the retry policy, in place of Options.Retry.
func (b AMSendBuilder) Retry(p RetryPolicy) AMSendBuilder {
	b.s.retry, b.s.hasRetry = p, true
	return b
}

// Header adds a header that the handler sees in Context.Headers.
func (b AMSendBuilder) Header(k, v string) AMSendBuilder { b.s.header(k, v); return b }

// Send hands the message to the transport.
func (b AMSendBuilder) Send(ctx context.Context) error {
	_, err := b.s.send(ctx)
	return err
}

// AMSyncBuilder is an acknowledged message being built; see AMSendBuilder
// for the shared methods.
type AMSyncBuilder struct{ s spec }

// Payload sets the body to v encoded as MessagePack.
func (b AMSyncBuilder) Payload(v any) AMSyncBuilder { b.s.encode(v); return b }

// RawPayload sets the body to p as is.
func (b AMSyncBuilder) RawPayload(p []byte) AMSyncBuilder { b.s.payload, b.s.err = p, nil; return b }

// Instance sets the target instance.
func (b AMSyncBuilder) Instance(id peer.ID) AMSyncBuilder { b.s.target = id; return b }

// Service routes the message to an instance of the named service that
// offers the handler, chosen by the Balancer; an Instance set too takes
// precedence.
func (b AMSyncBuilder) Service(name string) AMSyncBuilder { b.s.service = name; return b }

// Retry sets the retry policy, in place of Options.Retry.
func (b AMSyncBuilder) Retry(p RetryPolicy) AMSyncBuilder {
	b.s.retry, b.s.hasRetry = p, true
	return b
}

// Idempotent declares that running the handler twice does no harm: the
// call is retried after failures of unknown outcome too (see RetryPolicy).
func (b AMSyncBuilder) Idempotent() AMSyncBuilder { b.s.idem = true; return b }

// Hedge sends another attempt, to another instance, each time after
// passes with no answer (as many as the retry policy's Attempts, two at
// least); the first answer wins and the others are cancelled on their
// instances. A hedged call is idempotent.
func (b AMSyncBuilder) Hedge(after time.Duration) AMSyncBuilder {
	b.s.hedge, b.s.idem = after, true
	return b
}

// Header adds a header.
func (b AMSyncBuilder) Header(k, v string) AMSyncBuilder { b.s.header(k, v); return b }

// Send delivers the message and waits until the handler finished.
func (b AMSyncBuilder) Send(ctx context.Context) error {
	_, err := b.s.send(ctx)
	return err
}

// UnaryBuilder is a raw request being built; see AMSendBuilder for the
// shared methods.
type UnaryBuilder struct{ s spec }

// Payload sets the body to v encoded as MessagePack.
func (b UnaryBuilder) Payload(v any) UnaryBuilder { b.s.encode(v); return b }

// RawPayload sets the body to p as is.
func (b UnaryBuilder) RawPayload(p []byte) UnaryBuilder { b.s.payload, b.s.err = p, nil; return b }

// Instance sets the target instance.
func (b UnaryBuilder) Instance(id peer.ID) UnaryBuilder { b.s.target = id; return b }

// Service routes the message to an instance of the named service that
// offers the handler, chosen by the Balancer; an Instance set too takes
// precedence.
func (b UnaryBuilder) Service(name string) UnaryBuilder { b.s.service = name; return b }

// Retry sets the retry policy, in place of Options.Retry.
func (b UnaryBuilder) Retry(p RetryPolicy) UnaryBuilder { b.s.retry, b.s.hasRetry = p, true; return b }

// Idempotent declares that running the handler twice does no harm: the
// call is retried after failures of unknown outcome too (see RetryPolicy).
func (b UnaryBuilder) Idempotent() UnaryBuilder { b.s.idem = true; return b }

// Hedge sends another attempt, to another instance, each time after
// passes with no answer (as many as the retry policy's Attempts, two at
// least); the first answer wins and the others are cancelled on their
// instances. A hedged call is idempotent.
func (b UnaryBuilder) Hedge(after time.Duration) UnaryBuilder {
	b.s.hedge, b.s.idem = after, true
	return b
}

// Header adds a header.
func (b UnaryBuilder) Header(k, v string) UnaryBuilder { b.s.header(k, v); return b }

// Send delivers the request and returns the handler's result.
func (b UnaryBuilder) Send(ctx context.Context) ([]byte, error) { return b.s.send(ctx) }

// TypedUnaryBuilder is a typed request being built; see AMSendBuilder for
// the shared methods.
type TypedUnaryBuilder[R any] struct{ s spec }

// Payload sets the body to v encoded as MessagePack.
func (b TypedUnaryBuilder[R]) Payload(v any) TypedUnaryBuilder[R] { b.s.encode(v); return b }

// RawPayload sets the body to p as is (already MessagePack).
func (b TypedUnaryBuilder[R]) RawPayload(p []byte) TypedUnaryBuilder[R] {
	b.s.payload, b.s.err = p, nil
	return b
}

// Instance sets the target instance.
func (b TypedUnaryBuilder[R]) Instance(id peer.ID) TypedUnaryBuilder[R] { b.s.target = id; return b }

// Service routes the message to an instance of the named service that
// offers the handler, chosen by the Balancer; an Instance set too takes
// precedence.
func (b TypedUnaryBuilder[R]) Service(name string) TypedUnaryBuilder[R] { b.s.service = name; return b }

// Retry sets the retry policy, in place of Options.Retry.
func (b TypedUnaryBuilder[R]) Retry(p RetryPolicy) TypedUnaryBuilder[R] {
	b.s.retry, b.s.hasRetry = p, true
	return b
}

// Idempotent declares that running the handler twice does no harm: the
// call is retried after failures of unknown outcome too (see RetryPolicy).
func (b TypedUnaryBuilder[R]) Idempotent() TypedUnaryBuilder[R] { b.s.idem = true; return b }

// Hedge sends another attempt, to another instance, each time after
// passes with no answer (as many as the retry policy's Attempts, two at
// least); the first answer wins and the others are cancelled on their
// instances. A hedged call is idempotent.
func (b TypedUnaryBuilder[R]) Hedge(after time.Duration) TypedUnaryBuilder[R] {
	b.s.hedge, b.s.idem = after, true
	return b
}

// Header adds a header.
func (b TypedUnaryBuilder[R]) Header(k, v string) TypedUnaryBuilder[R] {
	b.s.header(k, v)
	return b
}

// Send delivers the request and decodes the handler's result. A result
// that does not decode into R fails with ErrBadPayload, as does one that
// would decode into more than 12 bytes per byte of it, plus 64 KiB (see
// TypedUnaryHandler).
func (b TypedUnaryBuilder[R]) Send(ctx context.Context) (R, error) {
	var r R
	p, err := b.s.send(ctx)
	if err != nil {
		return r, err
	}
	err = decodePayload(p, &r)
	if !b.s.m.clientIntercepts(b.s.handler) {
		// Decoding copied what r holds, and no interceptor saw p: a large
		// response's memory may take the next one (payloads.go).
		b.s.m.ReleasePayload(p)
	}
	if err != nil {
		return r, newError(CodeBadPayload, b.s.handler, err, "decoding response into %s: %v", typeName[R](), err)
	}
	return r, nil
}
