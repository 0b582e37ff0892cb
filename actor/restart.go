package actor

import (
	"fmt"
	"time"
)

// defaultMaxBackoff caps the restart backoff when RestartPolicy.MaxBackoff
// is zero.
const defaultMaxBackoff = 30 * time.Second

// RestartPolicy tells the supervisor what to do when a handler panics:
// re-create the handler from Config.Factory (a restart) or stop the actor.
//
// Its zero value is not DefaultRestartPolicy: it allows no restart, so the
// first panic stops the actor. Pass DefaultRestartPolicy() for handlers
// whose panics should fail only the message that caused them.
type RestartPolicy struct {
	// MaxRestarts is how many restarts are allowed within Window; one more
	// panic stops the actor. Negative: no limit. Zero: the first panic
	// stops the actor.
	MaxRestarts int
	// Window is the span over which restarts are counted, looking back
	// from each panic. Zero: count over the actor's whole life.
	Window time.Duration
	// Backoff is the delay before the first restart of a burst; zero
	// restarts at once. Messages that arrive during the delay wait for the
	// new handler; they are not lost.
	Backoff time.Duration
	// MaxBackoff caps the delay, which doubles with each consecutive
	// restart of a burst. Zero: 30 s (or Backoff, if that is larger).
	//
	// A burst is a run of restarts with no message handled successfully in
	// between: the first message a new handler finishes ends it, and the
	// next panic waits Backoff again.
	MaxBackoff time.Duration
}

// DefaultRestartPolicy always restarts, at once: a panic fails only the
// message that caused it, and the handler is re-created from its factory.
func DefaultRestartPolicy() RestartPolicy {
	return RestartPolicy{MaxRestarts: -1}
}

// Validate reports a negative duration, or a MaxBackoff below Backoff.
func (p RestartPolicy) Validate() error {
	switch {
	case p.Window < 0:
		return fmt.Errorf("velo: restart policy: negative Window %v", p.Window)
	case p.Backoff < 0:
		return fmt.Errorf("velo: restart policy: negative Backoff %v", p.Backoff)
	case p.MaxBackoff < 0:
		return fmt.Errorf("velo: restart policy: negative MaxBackoff %v", p.MaxBackoff)
	case p.MaxBackoff > 0 && p.MaxBackoff < p.Backoff:
		return fmt.Errorf("velo: restart policy: MaxBackoff %v is below Backoff %v", p.MaxBackoff, p.Backoff)
	}
	return nil
}

// backoff returns the delay before the restart that follows streak
// consecutive restarts: Backoff doubled streak times, capped.
func (p RestartPolicy) backoff(streak int) time.Duration {
	if p.Backoff <= 0 {
		return 0
	}
	limit := p.MaxBackoff
	if limit <= 0 {
		limit = max(defaultMaxBackoff, p.Backoff)
	}
	d := p.Backoff
	for range streak {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

// supervisor holds the restart bookkeeping of one actor. It does no I/O and
// reads no clock: the caller passes the time of each failure, so tests
// drive it directly.
type supervisor struct {
	policy RestartPolicy
	// restarts counts every restart granted.
	restarts int
	// recent holds the times of the restarts still inside Window, oldest
	// first; it is kept only when both Window and MaxRestarts are set, and
	// never holds more than MaxRestarts entries.
	recent []time.Time
	// streak counts the restarts since a handler last finished a message.
	streak int
}

// failure records a handler failure at now. proven says whether the
// failed handler had finished a message since its creation, which ends a
// backoff burst. It returns whether to restart and after what delay.
func (s *supervisor) failure(now time.Time, proven bool) (restart bool, delay time.Duration) {
	p := s.policy
	if p.MaxRestarts >= 0 {
		used := s.restarts
		if p.Window > 0 {
			cutoff := now.Add(-p.Window)
			i := 0
			for i < len(s.recent) && !s.recent[i].After(cutoff) {
				i++
			}
			s.recent = append(s.recent[:0], s.recent[i:]...)
			used = len(s.recent)
		}
		if used >= p.MaxRestarts {
			return false, 0
		}
		if p.Window > 0 {
			s.recent = append(s.recent, now)
		}
	}
	s.restarts++
	if proven {
		s.streak = 0
	}
	delay = p.backoff(s.streak)
	s.streak++
	return true, delay
}
