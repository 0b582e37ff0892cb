package mailbox

import (
	"errors"
	"strconv"
)

// Policy says what Slots.Acquire does when every slot is taken.
type Policy int

const (
	// Block makes Acquire wait for a slot (backpressure) until its context
	// ends or the slots close.
	Block Policy = iota
	// Reject makes Acquire fail at once with ErrFull when no slot is free.
	Reject
)

// String returns "block" or "reject".
func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case Reject:
		return "reject"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// Valid reports whether p is one of the defined policies.
func (p Policy) Valid() bool { return p == Block || p == Reject }

var (
	// ErrFull is returned by Slots.Acquire that found no free slot under
	// the Reject policy.
	ErrFull = errors.New("velo: mailbox full")
	// ErrClosed is returned by Slots.Acquire once the slots are closed.
	ErrClosed = errors.New("velo: mailbox closed")
)
