package events

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is: the errors the package returns
// wrap them with the handle or peer involved.
var (
	// ErrPoisoned matches the error an awaiter gets when its event was
	// poisoned. The concrete error is a *PoisonError carrying the reason.
	ErrPoisoned = errors.New("events: event poisoned")

	// ErrOwnerLost matches the error awaiters of a remote event get when its
	// owner could not be reached for Options.OwnerLostAfter, or when it
	// restarted since it created the event (ErrOwnerRestarted).
	ErrOwnerLost = errors.New("events: owner lost")

	// ErrOwnerRestarted matches the error for a handle that another
	// incarnation of its owner issued: the instance restarted under the
	// same ID since it created the event (the handle's Epoch is not the
	// owner's), and the event ended with the process that held it. It
	// wraps ErrOwnerLost, so errors.Is(err, ErrOwnerLost) holds as well.
	ErrOwnerRestarted = fmt.Errorf("%w: it restarted since it issued the handle", ErrOwnerLost)

	// ErrAlreadyCompleted is returned when a trigger or poison targets an
	// event that was already triggered or poisoned. An event completes once.
	ErrAlreadyCompleted = errors.New("events: event already completed")

	// ErrEventGone is returned for a handle that names no event the owner
	// still remembers: its slot was reused for a newer event, or it never
	// existed. A stale handle never observes the outcome of a newer event.
	ErrEventGone = errors.New("events: event gone")

	// ErrClosed is returned by a Manager after Close or Shutdown began.
	ErrClosed = errors.New("events: manager closed")

	// ErrNoNetwork is returned for a remote handle by a Manager built
	// without a Network.
	ErrNoNetwork = errors.New("events: remote event but no network")

	// ErrMalformed matches errors from decoding a handle or an event
	// message: the bytes do not follow the layout in docs/events.md.
	ErrMalformed = errors.New("events: malformed input")

	// ErrReasonTooLong is returned by Poison for a reason longer than
	// MaxReasonLen bytes, which would not fit in an event message.
	ErrReasonTooLong = errors.New("events: poison reason too long")
)

// PoisonError is the error an awaiter gets when its event was poisoned.
// errors.Is(err, ErrPoisoned) holds for it.
type PoisonError struct {
	Handle Handle // the event that was poisoned
	Reason string // exactly what was passed to Poison
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("events: event %s poisoned: %s", e.Handle, e.Reason)
}

// Is makes errors.Is(err, ErrPoisoned) hold.
func (e *PoisonError) Is(target error) bool { return target == ErrPoisoned }

// PoisonReason returns the reason carried by a poison error found in err's
// chain, and whether there was one.
func PoisonReason(err error) (string, bool) {
	var pe *PoisonError
	if errors.As(err, &pe) {
		return pe.Reason, true
	}
	return "", false
}

// ownerLostError builds the error awaiters of owner's events get when it is
// declared lost.
func ownerLostError(owner fmt.Stringer, cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: %s unreachable", ErrOwnerLost, owner)
	}
	return fmt.Errorf("%w: %s unreachable: %v", ErrOwnerLost, owner, cause)
}

func goneError(h Handle) error { return fmt.Errorf("%w: %s", ErrEventGone, h) }

func restartedError(h Handle) error { return fmt.Errorf("%w: %s", ErrOwnerRestarted, h) }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
