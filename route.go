package velo

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
)

// pick chooses the instance of one attempt of a routed call: a live
// instance of the call's service (any, without one) that offers the
// handler, as the balancer prefers among those not ejected and not tried
// by this call yet.
func (s *spec) pick(ctx context.Context, tried []*endpoint) (*endpoint, error) {
	all := s.m.routeTable().candidates(s.service, s.handler)
	if len(all) == 0 && s.m.askHandlers(ctx, s.handler) {
		all = s.m.routeTable().candidates(s.service, s.handler)
	}
	if len(all) == 0 {
		return nil, s.noInstance()
	}
	c := all
	if len(tried) > 0 || s.m.ejected.Load() > 0 {
		c = usable(all, tried)
	}
	i := s.m.balancer.Pick(s.handler, Candidates{eps: c, now: time.Now().Unix()})
	if i < 0 || i >= len(c) {
		i = 0 // a balancer's mistake costs it the choice, not the call
	}
	return c[i], nil
}

// usable narrows the candidates: neither ejected nor tried if some are,
// else not ejected, else not tried, else all of them.
func usable(all, tried []*endpoint) []*endpoint {
	ok := func(e *endpoint, skipEjected, skipTried bool) bool {
		return !(skipEjected && e.ejected.Load()) && !(skipTried && slices.Contains(tried, e))
	}
	for _, mode := range [...][2]bool{{true, true}, {true, false}, {false, true}} {
		var c []*endpoint
		for _, e := range all {
			if ok(e, mode[0], mode[1]) {
				c = append(c, e)
			}
		}
		if len(c) > 0 {
			return c
		}
	}
	return all
}

func (s *spec) noInstance() error {
	var e *Error
	if s.service != "" {
		e = newError(CodeHandlerNotFound, s.handler, nil, "no live instance of service %q offers %q", s.service, s.handler)
	} else {
		e = newError(CodeHandlerNotFound, s.handler, nil, "no live instance offers %q", s.handler)
	}
	e.outcome = outcomeNotDelivered
	return e
}

// attempt runs one attempt of a call: to the call's instance, or to one
// picked. It returns the endpoint it used when routed.
func (s *spec) attempt(ctx context.Context, p RetryPolicy, tried []*endpoint) ([]byte, *endpoint, error) {
	if !s.target.IsZero() {
		out, err := s.attemptTo(ctx, p, nil, s.target)
		return out, nil, err
	}
	ep, err := s.pick(ctx, tried)
	if err != nil {
		return nil, nil, err
	}
	out, err := s.attemptTo(ctx, p, ep, ep.id)
	return out, ep, err
}

// attemptTo sends the call to id, within p.AttemptTimeout if set, and
// keeps ep's counters when the call is routed.
func (s *spec) attemptTo(ctx context.Context, p RetryPolicy, ep *endpoint, id peer.ID) ([]byte, error) {
	actx := ctx
	if p.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, p.AttemptTimeout)
		defer cancel()
	}
	sess, err := s.m.sessionFor(actx, id, s.handler)
	if err != nil {
		return nil, undelivered(err, s.handler)
	}
	req := wire.Request{Kind: s.kind, Handler: s.handler, Headers: s.headers, Payload: s.payload}
	if ep == nil {
		return sess.roundTrip(actx, &req)
	}
	ep.inflight.Add(1)
	start := time.Now()
	out, err := sess.roundTrip(actx, &req)
	ep.inflight.Add(-1)
	s.m.settle(ep, err, start, ctx)
	return out, err
}

// settle folds an attempt's end into its endpoint: an answer (success or
// an error the instance sent) is a latency sample; consecutive attempts
// that timed out on their own bound eject the instance.
func (m *Messenger) settle(ep *endpoint, err error, start time.Time, callCtx context.Context) {
	var ve *Error
	switch {
	case err == nil, errors.As(err, &ve) && ve.Remote:
		now := time.Now()
		ep.sample(now.Sub(start), now.Unix())
		if ep.timeouts.Load() != 0 {
			ep.timeouts.Store(0)
		}
	case errors.Is(err, ErrDeadlineExceeded) && callCtx.Err() == nil:
		if ep.timeouts.Add(1) >= ejectTimeouts {
			m.eject(ep, "consecutive attempts timed out")
		}
	}
}

// askHandlers connects to the live instances whose handlers only
// RegisterPeer described (it may predate their registrations), so that
// their hellos say what they offer; it reports whether there were any.
// Each is connected to once, within ctx and DialTimeout.
func (m *Messenger) askHandlers(ctx context.Context, handler string) bool {
	var ids []peer.ID
	m.mu.RLock()
	for id, ps := range m.peers {
		// One that failed to connect lately is left out: a call must not
		// wait for its backoff to learn that nobody offers the handler.
		if id != m.id && !ps.toldHandlers && ps.failures == 0 && m.liveLocked(ps) && len(ps.info.Addresses) > 0 {
			ids = append(ids, id)
		}
	}
	m.mu.RUnlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { m.sessionFor(ctx, id, handler) })
	}
	wg.Wait()
	return len(ids) > 0
}
