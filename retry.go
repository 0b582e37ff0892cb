package velo

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
)

// RetryPolicy says how a call is tried again when an attempt fails in a
// way that allows it: a failure NotDelivered reports (the handler did not
// run), and, for a call marked Idempotent, one of unknown outcome too (the
// connection lost after the request left, an attempt's own timeout). A
// routed call retries on another instance while one is left; a call to
// .Instance(id) retries there. Handler errors are never retried. Every
// retry stays within the call's ctx and takes from the retry budget
// (Options.RetryBudget).
type RetryPolicy struct {
	// Attempts counts the first try: 3 is up to two retries. 0 and 1:
	// no retry.
	Attempts int
	// Backoff is the pause before the first retry; it doubles for each
	// one after, and each pause is drawn at random from its upper half
	// (jitter), so that callers failed by one event do not retry in step.
	// A pause that would outlast the ctx's deadline is not taken: the
	// call fails with the last attempt's error. Zero: retry at once.
	Backoff time.Duration
	// AttemptTimeout bounds each attempt within the call's ctx; an
	// attempt that runs out is of unknown outcome (retried only when
	// Idempotent), and several in a row to one instance take it out of
	// the picks. Zero: an attempt has the whole ctx.
	AttemptTimeout time.Duration
}

func (p RetryPolicy) validate(scope string) error {
	return errors.Join(
		optcheck.NotNegative("", scope+"Attempts", p.Attempts),
		optcheck.NotNegative("", scope+"Backoff", p.Backoff),
		optcheck.NotNegative("", scope+"AttemptTimeout", p.AttemptTimeout),
	)
}

// pause is the wait before retry n (1 for the first), jittered.
func (p RetryPolicy) pause(n int) time.Duration {
	if p.Backoff <= 0 {
		return 0
	}
	d := p.Backoff << min(n-1, 20)
	d = min(d, maxRetryPause)
	return d/2 + rand.N(d/2+1)
}

// maxRetryPause caps the exponential pause between retries.
const maxRetryPause = 5 * time.Second

// Defaults of RetryBudget.
const (
	// DefaultRetryRatio: retries may be a fifth of the calls that have a
	// retry policy.
	DefaultRetryRatio = 0.2
	// DefaultMinRetriesPerSecond is what the budget allows whatever the
	// ratio: 10 retries a second.
	DefaultMinRetriesPerSecond = 10
)

// RetryBudget bounds retries across all calls of an instance, as gRPC's
// retry throttling and Finagle's retry budgets do: over the last
// retryWindow (10 s), retries (and hedged attempts) may number Ratio
// times the calls made with a retry policy, plus MinPerSecond for each
// second of the window. Past it, a call that could be retried fails with
// its last error instead, and a service that fails everything sees its
// load grow by Ratio at most, not by the Attempts of every caller.
type RetryBudget struct {
	// Ratio of retries to calls. Zero: DefaultRetryRatio (0.2).
	Ratio float64
	// MinPerSecond is the retries allowed each second whatever Ratio
	// allows, so that a service called seldom can still retry. Zero:
	// DefaultMinRetriesPerSecond (10).
	MinPerSecond float64
}

func (b RetryBudget) validate() error {
	return errors.Join(
		optcheck.NotNegative("", "RetryBudget.Ratio", b.Ratio),
		optcheck.NotNegative("", "RetryBudget.MinPerSecond", b.MinPerSecond),
	)
}

// retryWindow is the span the retry budget counts over, in one-second
// buckets.
const retryWindow = 10

// retryBudget counts calls and retries per second over the window.
type retryBudget struct {
	ratio, floor float64
	mu           sync.Mutex
	sec          [retryWindow]int64 // guarded by mu: the second each bucket counts
	calls        [retryWindow]int   // guarded by mu
	retries      [retryWindow]int   // guarded by mu
}

func (b *retryBudget) init(o RetryBudget) {
	b.ratio, b.floor = o.Ratio, o.MinPerSecond
	if b.ratio == 0 {
		b.ratio = DefaultRetryRatio
	}
	if b.floor == 0 {
		b.floor = DefaultMinRetriesPerSecond
	}
}

// bucket returns the index of the current second's bucket, emptied if it
// last counted an older second. b.mu is held.
func (b *retryBudget) bucket(now int64) int {
	i := int(now % retryWindow)
	if b.sec[i] != now {
		b.sec[i], b.calls[i], b.retries[i] = now, 0, 0
	}
	return i
}

// call counts a call made with a retry policy.
func (b *retryBudget) call() {
	now := time.Now().Unix()
	b.mu.Lock()
	b.calls[b.bucket(now)]++
	b.mu.Unlock()
}

// allow takes one retry from the budget, if it has one.
func (b *retryBudget) allow() bool {
	now := time.Now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.bucket(now)
	calls, retries := 0, 0
	for j := range retryWindow {
		if now-b.sec[j] < retryWindow {
			calls += b.calls[j]
			retries += b.retries[j]
		}
	}
	if float64(retries) >= b.ratio*float64(calls)+b.floor*retryWindow {
		return false
	}
	b.retries[i]++
	return true
}

// policy is the retry policy of the call: its own, or the default.
func (s *spec) policy() RetryPolicy {
	if s.hasRetry {
		return s.retry
	}
	return s.m.opts.Retry
}

// call runs a call that is routed, retried or hedged.
func (s *spec) call(ctx context.Context) ([]byte, error) {
	m := s.m
	p := s.policy()
	if p.Attempts > 1 || s.hedge > 0 {
		m.budget.call()
	}
	if s.hedge > 0 {
		return s.hedged(ctx, p)
	}
	var tried []*endpoint
	for n := 1; ; n++ {
		out, ep, err := s.attempt(ctx, p, tried)
		if err == nil {
			return out, nil
		}
		if ep != nil {
			tried = append(tried, ep)
		}
		if n >= p.Attempts || !s.retryable(ctx, err) || !m.budget.allow() {
			return nil, err
		}
		if !sleep(ctx, p.pause(n)) {
			return nil, err
		}
		m.retried.Add(1)
	}
}

// retryable reports whether an attempt's failure lets the call try again.
func (s *spec) retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || s.m.state.Load() >= stateClosing {
		return false
	}
	return NotDelivered(err) || s.idem && unknownOutcome(err)
}

// sleep waits d, unless ctx ends first or its deadline comes before d
// has passed; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
