package velo

import (
	"context"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// Pattern is the kind of a call an interceptor sees.
type Pattern uint8

// The patterns. TypedUnary calls are Unary calls whose payloads are
// MessagePack.
const (
	AMSend Pattern = iota + 1 // fire-and-forget
	AMSync                    // acknowledged: returns once the handler finished
	Unary                     // request-response
)

func (p Pattern) String() string {
	switch p {
	case AMSend:
		return "AMSend"
	case AMSync:
		return "AMSync"
	case Unary:
		return "Unary"
	}
	return "unknown"
}

func patternOf(k wire.Kind) Pattern {
	switch k {
	case wire.KindAMSend:
		return AMSend
	case wire.KindAMSync:
		return AMSync
	}
	return Unary
}

// Call is an outgoing call as a ClientInterceptor sees it. An interceptor
// may change Headers (give the call a map of its own: the one it has may
// be shared with a reused builder), Payload and Target before it calls
// next.
type Call struct {
	Pattern Pattern
	Handler string
	// Target is the instance given with .Instance; zero when velo picks
	// one (.Service, or no target), which next does.
	Target  peer.ID
	Service string // the service given with .Service, if any
	Headers map[string]string
	Payload []byte
}

// ClientInterceptor wraps every outgoing call of the messenger, of the
// four patterns and their typed forms, around its routing, retries and
// hedging: next runs them and returns the result (the response payload
// for Unary, nil otherwise) or the call's error. An interceptor may refuse
// the call by returning an error without calling next (return a velo
// *Error to give it a code), time it, or change it. Calls to velo's own
// handlers (names starting with '_': handshake, ping, handler lists,
// events) are not intercepted.
type ClientInterceptor func(ctx context.Context, call *Call, next func(context.Context, *Call) ([]byte, error)) ([]byte, error)

// ServerInterceptor wraps every run of a user handler, inside its actor
// (after admission: a refused or expired request never reaches it): next
// runs the handler. It may read and change c (Headers, Payload) before
// calling next, refuse the request by returning an error without calling
// next (the caller gets it as a handler would have returned it: a velo
// *Error keeps its code), or change the result.
type ServerInterceptor func(ctx context.Context, c *Context, next func(context.Context, *Context) ([]byte, error)) ([]byte, error)

// ClientInterceptor adds interceptors to every outgoing call; the first
// given is the outermost.
func (b *Builder) ClientInterceptor(i ...ClientInterceptor) *Builder {
	b.client = append(b.client, i...)
	return b
}

// ServerInterceptor adds interceptors to every handler run; the first
// given is the outermost.
func (b *Builder) ServerInterceptor(i ...ServerInterceptor) *Builder {
	b.server = append(b.server, i...)
	return b
}

// intercepted runs the call through the client interceptors; run does
// the call as the (possibly changed) spec says. It takes the spec by
// value: the closures hold the copy, so that an uninterrupted call's
// builder stays on its caller's stack.
func (s spec) intercepted(ctx context.Context, run func(*spec, context.Context) ([]byte, error)) ([]byte, error) {
	call := &Call{Pattern: patternOf(s.kind), Handler: s.handler, Target: s.target, Service: s.service, Headers: s.headers, Payload: s.payload}
	return s.link(0, run)(ctx, call)
}

// link is the next of interceptor i-1: interceptor i, or the call itself
// past the last. Each level is a function of its own, so an interceptor
// may call its next more than once (a retry of its own).
func (s *spec) link(i int, run func(*spec, context.Context) ([]byte, error)) func(context.Context, *Call) ([]byte, error) {
	if i == len(s.m.client) {
		return func(ctx context.Context, c *Call) ([]byte, error) {
			sp := *s
			sp.headers, sp.payload, sp.target, sp.service = c.Headers, c.Payload, c.Target, c.Service
			return run(&sp, ctx)
		}
	}
	ic := s.m.client[i]
	return func(ctx context.Context, c *Call) ([]byte, error) {
		return ic(ctx, c, s.link(i+1, run))
	}
}

// clientIntercepts reports whether a call to handler goes through the
// client interceptors.
func (m *Messenger) clientIntercepts(handler string) bool {
	return len(m.client) > 0 && !system.IsReserved(handler)
}

// serverChain wraps fn, the handler named name, in the server
// interceptors; velo's own handlers are not wrapped.
func (m *Messenger) serverChain(name string, fn invokeFunc) invokeFunc {
	if len(m.server) == 0 || system.IsReserved(name) {
		return fn
	}
	for i := len(m.server) - 1; i >= 0; i-- {
		ic, next := m.server[i], fn
		fn = func(ctx context.Context, c *Context) ([]byte, error) {
			return ic(ctx, c, next)
		}
	}
	return fn
}
