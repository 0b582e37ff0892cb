package actor

import "strconv"

// Mode says on which goroutine an actor runs its messages.
type Mode int

const (
	// Spawn runs messages on a pool of worker goroutines, never on the
	// caller's, so messages run in parallel: quick handlers run back to
	// back on one worker, and a handler that blocks leaves the next
	// messages to another. Idle workers exit after about a second.
	// Config.MaxConcurrency optionally caps how many run at once.
	Spawn Mode = iota
	// Inline runs each message on the goroutine that calls Tell (the
	// receive path), with no hop: for tiny handlers and the least latency.
	// A slow Inline handler stalls everything behind it on that goroutine.
	Inline
	// Ordered runs the messages told with the same key one at a time, in
	// the order of their Tell calls; messages with different keys run in
	// parallel.
	Ordered
)

// String returns "spawn", "inline" or "ordered".
func (m Mode) String() string {
	switch m {
	case Spawn:
		return "spawn"
	case Inline:
		return "inline"
	case Ordered:
		return "ordered"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

func (m Mode) valid() bool { return m == Spawn || m == Inline || m == Ordered }
