// Package velo is an active-messaging runtime: each instance (a Messenger)
// registers named handlers, and any instance calls the handlers of any
// other over pluggable transports (TCP by default).
//
// Four patterns, one builder each:
//
//	m.AMSend("h")...Send(ctx)                 // fire and forget: returns once handed to the transport
//	m.AMSync("h")...Send(ctx)                 // returns when the remote handler finished
//	m.Unary("h")...Send(ctx)                  // returns the handler's result as bytes
//	velo.TypedUnary[R](m, "h")...Send(ctx)    // returns the result decoded into R (MessagePack)
//
// Handlers run as supervised actors with bounded mailboxes, in one of three
// dispatch modes: Spawn (on worker goroutines, the default), Inline (on
// the connection's receive goroutine) and Ordered (one at a time per
// sender). A panic fails only the call that caused it; the restart policy
// decides whether the handler goes on.
//
// Every failure is an *Error with a Code that survives the trip over the
// network, so errors.Is(err, velo.ErrHandlerNotFound) holds on the caller
// whatever instance raised it. The caller's deadline and cancellation
// reach the handler's ctx on the remote instance.
//
// See docs/architecture.md in the repository for how a frame flows.
package velo
