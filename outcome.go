package velo

import (
	"errors"
)

// outcome says what a failed call did to its handler, where the code
// alone does not (a lost connection before or after the request left).
type outcome uint8

const (
	outcomeByCode       outcome = iota // see NotDelivered
	outcomeNotDelivered                // the request never left this instance
	outcomeUnknown                     // it left; whether the handler ran is not known
)

// NotDelivered reports whether err is the failure of a call whose handler
// certainly did not run: the request never left this instance (no
// instance offers the handler, the peer is unknown or unreachable, this
// instance's limit of calls in flight refused it, the request broke a
// limit, the connection was gone before the request was written), or the
// called instance refused it before its handler took it (no such handler,
// its mailbox full, shutting down, the handler stopped, the request
// malformed or too large). Such a call can be sent again, to any instance,
// without running anything twice; .Retry does so.
//
// A handler that answers ErrBusy, ErrHandlerNotFound, ErrShuttingDown or
// ErrHandlerStopped itself declares that it did nothing, and its caller
// treats the call as not delivered.
//
// NotDelivered is false for errors after the handler ran (its own error,
// a panic, an answer that does not decode) and for those of unknown
// outcome: the connection lost after the request was written, a deadline
// or cancellation, an error of a code this version does not know.
// docs/services.md has the table of every error.
func NotDelivered(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.outcome {
	case outcomeNotDelivered:
		return true
	case outcomeUnknown:
		return false
	}
	switch e.Code {
	case CodeHandlerNotFound, CodeBusy, CodeShuttingDown, CodeHandlerStopped,
		CodeBadRequest, CodePayloadTooLarge, CodePeerUnknown, CodePermissionDenied, CodeUnauthenticated:
		return true
	}
	return false
}

// unknownOutcome reports whether err leaves open whether the handler ran:
// what .Idempotent makes a call retry too.
func unknownOutcome(err error) bool {
	var e *Error
	if !errors.As(err, &e) || NotDelivered(err) {
		return false
	}
	if e.outcome == outcomeUnknown {
		return true
	}
	switch e.Code {
	case CodePeerLost, CodeDeadlineExceeded, CodeCanceled, CodeInternal:
		return true
	}
	return false
}

// undelivered marks err, a failure before the request left, as not
// delivered.
func undelivered(err error, handler string) error {
	return withOutcome(err, handler, outcomeNotDelivered)
}

// withOutcome returns err as an *Error of the given outcome; an error
// that is not an *Error becomes a lost peer.
func withOutcome(err error, handler string, o outcome) error {
	var ve *Error
	if !errors.As(err, &ve) {
		e := newError(CodePeerLost, handler, err, "%v", err)
		e.outcome = o
		return e
	}
	e := *ve
	if e.cause == nil && err != error(ve) {
		e.cause = err
	}
	e.outcome = o
	return &e
}
