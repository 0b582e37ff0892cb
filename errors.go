package velo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/wire"
)

// Code classifies a velo error. Codes travel on the wire, so an error raised
// by a remote instance keeps its code, and errors.Is matches it against the
// Err sentinels on the caller's side.
type Code uint8

// Error codes. Zero is no code. Each has a status on the wire of its own;
// that mapping is internal, and a status this version does not know
// arrives as CodeInternal.
const (
	CodeHandlerNotFound  Code = 1
	CodeHandlerError     Code = 2
	CodeHandlerPanic     Code = 3
	CodeBusy             Code = 4
	CodeDeadlineExceeded Code = 5
	CodeCanceled         Code = 6
	CodePeerUnknown      Code = 7
	CodePeerLost         Code = 8
	CodePayloadTooLarge  Code = 9
	CodeBadPayload       Code = 10
	CodeShuttingDown     Code = 11
	CodeHandlerStopped   Code = 12
	CodeBadRequest       Code = 13
	CodeInternal         Code = 14
	CodeOwnerLost        Code = 15
	CodeEventPoisoned    Code = 16
	CodePermissionDenied Code = 17
	CodeUnauthenticated  Code = 18
)

var codeText = map[Code]string{
	CodeHandlerNotFound:  "handler not found",
	CodeHandlerError:     "handler error",
	CodeHandlerPanic:     "handler panic",
	CodeBusy:             "busy",
	CodeDeadlineExceeded: "deadline exceeded",
	CodeCanceled:         "canceled",
	CodePeerUnknown:      "peer unknown",
	CodePeerLost:         "peer lost",
	CodePayloadTooLarge:  "payload too large",
	CodeBadPayload:       "bad payload",
	CodeShuttingDown:     "shutting down",
	CodeHandlerStopped:   "handler stopped",
	CodeBadRequest:       "bad request",
	CodeInternal:         "internal error",
	CodeOwnerLost:        "owner lost",
	CodeEventPoisoned:    "event poisoned",
	CodePermissionDenied: "permission denied",
	CodeUnauthenticated:  "unauthenticated",
}

// Name is the code as an identifier, for scripts and metrics:
// "handler_not_found", "deadline_exceeded", "code_99" for a code this
// version does not know.
func (c Code) Name() string { return strings.ReplaceAll(c.String(), " ", "_") }

func (c Code) String() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// Sentinels for errors.Is, one per Code. Every error velo returns for one
// of these conditions matches its sentinel, whether it arose locally or on
// the remote instance. ErrDeadlineExceeded also matches
// context.DeadlineExceeded, and ErrCanceled matches context.Canceled.
var (
	ErrHandlerNotFound  = &Error{Code: CodeHandlerNotFound}
	ErrHandlerError     = &Error{Code: CodeHandlerError}
	ErrHandlerPanic     = &Error{Code: CodeHandlerPanic}
	ErrBusy             = &Error{Code: CodeBusy}
	ErrDeadlineExceeded = &Error{Code: CodeDeadlineExceeded}
	ErrCanceled         = &Error{Code: CodeCanceled}
	ErrPeerUnknown      = &Error{Code: CodePeerUnknown}
	ErrPeerLost         = &Error{Code: CodePeerLost}
	ErrPayloadTooLarge  = &Error{Code: CodePayloadTooLarge}
	ErrBadPayload       = &Error{Code: CodeBadPayload}
	ErrShuttingDown     = &Error{Code: CodeShuttingDown}
	ErrHandlerStopped   = &Error{Code: CodeHandlerStopped}
	ErrBadRequest       = &Error{Code: CodeBadRequest}
	// ErrPermissionDenied: Options.Authorize refused the caller; the
	// handler did not run.
	ErrPermissionDenied = &Error{Code: CodePermissionDenied}
	// ErrUnauthenticated: the call needs an authenticated identity (mutual
	// TLS, or a Unix socket's credentials) and its connection has none.
	ErrUnauthenticated = &Error{Code: CodeUnauthenticated}
)

// Event errors, returned by events.Awaiter.Wait: velo re-exports those of
// package events so that callers need only one import. A handler that
// returns one of them (or an error wrapping it) answers with
// CodeOwnerLost or CodeEventPoisoned, and the caller's error matches the
// same sentinel.
var (
	// ErrOwnerLost: the instance that owns the event could not be reached
	// within the owner-lost bound.
	ErrOwnerLost = events.ErrOwnerLost
	// ErrEventPoisoned: the owner poisoned the event; events.PoisonReason
	// gives the reason.
	ErrEventPoisoned = events.ErrPoisoned
)

// Registration errors, returned by RegisterHandler (wrapped with detail).
var (
	// ErrHandlerExists: the name is already registered; the first handler
	// stays.
	ErrHandlerExists = errors.New("velo: handler already registered")
	// ErrInvalidHandler: a reserved or malformed name, a nil function, a
	// bad option (mailbox size, concurrency, restart policy), or one
	// handler more than a hello can list (system.MaxHelloHandlers names,
	// system.MaxHelloHandlerBytes of them in all).
	ErrInvalidHandler = errors.New("velo: invalid handler")
)

// Error is the error type of every failed call. Code says what went wrong;
// Message adds detail (a handler's own error text, the panic value, the type
// that failed to decode). Remote is true when the error was raised by the
// instance that was called and carried back over the wire.
type Error struct {
	Code    Code
	Handler string // the handler called, when known
	Message string
	Remote  bool
	cause   error // local only: the error behind this one, if any
	outcome outcome
}

func (e *Error) Error() string {
	s := "velo: " + e.Code.String()
	if e.Handler != "" {
		s += fmt.Sprintf(" (handler %q)", e.Handler)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is matches any *Error with the same code, so that sentinels work across
// the network, the context errors for deadline and cancellation, and the
// event errors ErrOwnerLost and ErrEventPoisoned.
func (e *Error) Is(target error) bool {
	if t, ok := target.(*Error); ok {
		return t.Code == e.Code
	}
	switch e.Code {
	case CodeDeadlineExceeded:
		return target == context.DeadlineExceeded
	case CodeCanceled:
		return target == context.Canceled
	case CodeOwnerLost:
		return target == events.ErrOwnerLost
	case CodeEventPoisoned:
		return target == events.ErrPoisoned
	}
	return false
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.cause }

func newError(code Code, handler string, cause error, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Handler: handler, Message: msg, cause: cause}
}

// ctxError turns the end of a caller's context into a velo error.
func ctxError(ctx context.Context, handler string) *Error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeDeadlineExceeded, Handler: handler, cause: context.Cause(ctx)}
	}
	return &Error{Code: CodeCanceled, Handler: handler, cause: context.Cause(ctx)}
}

// ctxErrorOr is ctxError for a ctx whose deadline has passed, even if its
// timer has not fired yet.
func ctxErrorOr(ctx context.Context, handler string) *Error {
	if ctx.Err() == nil {
		return &Error{Code: CodeDeadlineExceeded, Handler: handler, cause: context.DeadlineExceeded}
	}
	return ctxError(ctx, handler)
}

// toStatus turns an error returned by a handler, or raised while dispatching
// to it, into what goes back on the wire. An *Error keeps its code (so a
// handler may answer busy or bad payload itself); the context errors and
// the event errors keep theirs; anything else is a handler error carrying
// its text.
func toStatus(err error) (wire.Status, string) {
	var ve *Error
	switch {
	case errors.As(err, &ve):
		if err == error(ve) || ve.Message == "" {
			return statusOf(ve.Code), ve.Message
		}
		// Keep the context the handler wrapped around the velo error.
		return statusOf(ve.Code), err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return wire.StatusDeadlineExceeded, err.Error()
	case errors.Is(err, context.Canceled):
		return wire.StatusCanceled, err.Error()
	case errors.Is(err, events.ErrOwnerLost):
		return wire.StatusOwnerLost, err.Error()
	case errors.Is(err, events.ErrPoisoned):
		return wire.StatusEventPoisoned, err.Error()
	}
	return wire.StatusHandlerError, err.Error()
}

// fromStatus rebuilds the error a remote instance answered.
func fromStatus(s wire.Status, msg, handler string) error {
	if s == wire.StatusOK {
		return nil
	}
	return &Error{Code: codeOf(s), Handler: handler, Message: msg, Remote: true}
}

// codeStatus is the wire status of each code.
var codeStatus = [...]wire.Status{
	CodeHandlerNotFound:  wire.StatusHandlerNotFound,
	CodeHandlerError:     wire.StatusHandlerError,
	CodeHandlerPanic:     wire.StatusHandlerPanic,
	CodeBusy:             wire.StatusBusy,
	CodeDeadlineExceeded: wire.StatusDeadlineExceeded,
	CodeCanceled:         wire.StatusCanceled,
	CodePeerUnknown:      wire.StatusPeerUnknown,
	CodePeerLost:         wire.StatusPeerLost,
	CodePayloadTooLarge:  wire.StatusPayloadTooLarge,
	CodeBadPayload:       wire.StatusBadPayload,
	CodeShuttingDown:     wire.StatusShuttingDown,
	CodeHandlerStopped:   wire.StatusHandlerStopped,
	CodeBadRequest:       wire.StatusBadRequest,
	CodeInternal:         wire.StatusInternal,
	CodeOwnerLost:        wire.StatusOwnerLost,
	CodeEventPoisoned:    wire.StatusEventPoisoned,
	CodePermissionDenied: wire.StatusPermissionDenied,
	CodeUnauthenticated:  wire.StatusUnauthenticated,
}

// statusCode is codeStatus the other way round.
var statusCode = func() map[wire.Status]Code {
	m := make(map[wire.Status]Code, len(codeStatus))
	for c, s := range codeStatus {
		if c != 0 {
			m[s] = Code(c)
		}
	}
	return m
}()

// statusOf is the wire status of c; a code without one (zero, or a value
// no constant names) travels as an internal error.
func statusOf(c Code) wire.Status {
	if int(c) < len(codeStatus) && c != 0 {
		return codeStatus[c]
	}
	return wire.StatusInternal
}

// codeOf is the code of wire status s, which is not StatusOK.
func codeOf(s wire.Status) Code {
	if c, ok := statusCode[s]; ok {
		return c
	}
	return CodeInternal
}
