// Package lograte limits how often a log line is written, so that a flood
// of one event (a handler that panics on every message) cannot fill the
// logs, and counts the lines left out so that the next line written can
// say how many there were.
//
// A Limiter lets a burst of lines through at once, then one line per
// period; a quiet spell earns the burst back, one line per period. It
// reads no clock: the caller passes the time, so tests drive it with
// explicit times.
package lograte

import (
	"math"
	"sync/atomic"
	"time"
)

// Limiter decides which lines of a kind are written. Create it with New;
// it is safe for concurrent use, and Allow takes no lock.
type Limiter struct {
	// origin is where times are measured from. It is read from the clock
	// once, so that times the caller takes from time.Now are compared on
	// the monotonic clock, which a change of the wall clock does not move.
	origin time.Time
	every  int64 // ns between lines once the burst is spent; 0: no limit
	window int64 // burst × every, in ns
	// next is when the line after the last one allowed would be due if
	// lines came one per period, in ns since origin. A line is allowed if
	// next lies no further ahead of now than window once the line is
	// counted: that lets burst lines through at once, and then one per
	// period as now catches up.
	next       atomic.Int64
	suppressed atomic.Uint64 // refused since the last line allowed
}

// New returns a Limiter that allows burst lines at once, then one line
// every period. A burst below 1 is taken as 1; a period of zero or less
// allows every line.
func New(burst int, every time.Duration) *Limiter {
	l := &Limiter{origin: time.Now()}
	if every > 0 {
		b := int64(max(burst, 1))
		l.every = int64(every)
		l.window = math.MaxInt64
		if b <= math.MaxInt64/l.every {
			l.window = b * l.every
		}
	}
	l.next.Store(math.MinInt64) // no line yet: the whole burst is there
	return l
}

// Allow reports whether the line due at now may be written. When it may,
// suppressed is how many lines were refused since the last one allowed,
// for the caller to add to this one; when it may not, the refusal is
// counted and suppressed is 0.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed uint64) {
	if l.every == 0 {
		return true, 0
	}
	n := int64(now.Sub(l.origin))
	for {
		due := l.next.Load()
		if due > n && due-n > l.window {
			// Further ahead than any allowed line can put it: now went
			// back (callers whose times were taken out of order, or a
			// wall clock set back). Count from now, with no burst left.
			if !l.next.CompareAndSwap(due, n+l.window) {
				continue
			}
			due = n + l.window
		}
		after := max(due, n) + l.every
		if after-n > l.window {
			l.suppressed.Add(1)
			return false, 0
		}
		if l.next.CompareAndSwap(due, after) {
			return true, l.suppressed.Swap(0)
		}
	}
}
