package actor

import (
	"errors"
	"fmt"
)

// ErrStopped is the sentinel for an actor that takes no more messages:
// Tell returns an error wrapping it once Stop was called or the supervisor
// stopped the actor, and Drop receives one for the messages that will never
// run. The wrapping error says which actor and why, for example
//
//	velo: handler stopped: "orders" after 2 restarts: last panic: boom
//
// Match it with errors.Is, never by its text.
var ErrStopped = errors.New("velo: handler stopped")

// PanicError is a panic recovered from a handler, with the stack of the
// goroutine that panicked. A message whose handler panicked fails with it
// (see Config.OnPanic).
type PanicError struct {
	// Value is what the handler passed to panic.
	Value any
	// Stack is the goroutine's stack at the point of recovery, as printed
	// by runtime/debug.Stack; it includes the frame that panicked.
	Stack []byte
}

// Error returns "panic: " and the value. The stack is left out: it is long,
// and the error may travel back to a remote caller.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns Value when it is an error, so that errors.Is and errors.As
// see through a handler that panicked with an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// errNilHandler is why New or a restart fails when the factory returns nil.
var errNilHandler = errors.New("factory returned a nil handler")

// goexitValue is the PanicError value for a handler that called
// runtime.Goexit: its message did not complete, which the caller must hear
// about just as for a panic.
const goexitValue = "handler called runtime.Goexit"
