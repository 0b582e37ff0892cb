package velo

import (
	"context"
	"time"
)

// hedged runs a hedged call: one attempt, then another to a different
// instance each time s.hedge passes without an answer, or at once when
// an attempt fails in a way that may be retried, up to the policy's
// Attempts (two at least). The first answer wins; returning cancels the
// attempts still out, and each sends its instance a cancel, so that
// their handlers see their ctx end.
//
// It takes the spec by value: its attempts' goroutines hold the copy, so
// that the builder of an unhedged call stays on its caller's stack.
func (s spec) hedged(ctx context.Context, p RetryPolicy) ([]byte, error) {
	m := s.m
	attempts := max(p.Attempts, 2)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		out []byte
		err error
	}
	answers := make(chan answer, attempts) // room for every attempt: none blocks
	var tried []*endpoint
	launched, out := 0, 0
	launch := func() error {
		launched++
		var ep *endpoint
		if s.target.IsZero() {
			var err error
			if ep, err = s.pick(ctx, tried); err != nil {
				return err
			}
			tried = append(tried, ep)
		}
		out++
		go func() {
			id := s.target
			if ep != nil {
				id = ep.id
			}
			b, err := s.attemptTo(hctx, ctx, p, ep, id)
			answers <- answer{b, err}
		}()
		return nil
	}
	if err := launch(); err != nil {
		return nil, err
	}
	timer := time.NewTimer(s.hedge)
	defer timer.Stop()
	var last error
	for out > 0 {
		select {
		case a := <-answers:
			out--
			if a.err == nil {
				return a.out, nil
			}
			last = a.err
			if launched < attempts && s.retryable(ctx, a.err) && m.budget.allow() {
				m.retried.Add(1)
				if err := launch(); err != nil && out == 0 {
					return nil, last
				}
			}
		case <-timer.C:
			if launched < attempts && m.budget.allow() {
				m.retried.Add(1)
				launch()
				timer.Reset(s.hedge)
			}
		}
	}
	return nil, last
}
