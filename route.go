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
	if len(all) == 0 {
		// The backend may list an instance its Watch has not reported
		// yet, and RegisterPeer may have given one whose handlers we do
		// not know: look before saying nobody offers it.
		listed := s.m.list(ctx)
		asked := s.m.askHandlers(ctx, s.handler)
		if listed || asked {
			all = s.m.routeTable().candidates(s.service, s.handler)
		}
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
		out, err := s.attemptTo(ctx, ctx, p, nil, s.target)
		return out, nil, err
	}
	ep, err := s.pick(ctx, tried)
	if err != nil {
		return nil, nil, err
	}
	out, err := s.attemptTo(ctx, ctx, p, ep, ep.id)
	return out, ep, err
}

// attemptTo sends the call to id, within ctx and p.AttemptTimeout, and
// keeps ep's counters when the call is routed. callCtx is the call's own
// ctx: a hedge ends ctx when another attempt won, not callCtx.
func (s *spec) attemptTo(ctx, callCtx context.Context, p RetryPolicy, ep *endpoint, id peer.ID) ([]byte, error) {
	actx := ctx
	if p.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, p.AttemptTimeout)
		defer cancel()
	}
	if ep == nil {
		sess, err := s.m.sessionFor(actx, id, s.handler)
		if err != nil {
			return nil, undelivered(err, s.handler)
		}
		req := wire.Request{Kind: s.kind, Handler: s.handler, Headers: s.headers, Payload: s.payload}
		return sess.roundTrip(actx, &req)
	}
	// A routed call counts as in flight from its pick on, connection
	// included: calls piling up on an instance being dialed are load.
	ep.inflight.Add(1)
	defer ep.inflight.Add(-1)
	if err := s.m.backingOff(ep.id, s.handler); err != nil {
		return nil, err // another instance may take it at once
	}
	sess, err := s.m.sessionFor(actx, id, s.handler)
	if err != nil {
		return nil, undelivered(err, s.handler)
	}
	req := wire.Request{Kind: s.kind, Handler: s.handler, Headers: s.headers, Payload: s.payload}
	if !s.kind.WantsResponse() {
		return sess.roundTrip(actx, &req) // a one-way message's write is no latency sample
	}
	start := time.Now()
	out, err := sess.exchange(actx, &req, s.idem)
	s.m.settle(ep, err, start, callCtx)
	return out, err
}

// remote reports whether err was answered by the called instance. (Its
// own function: the *Error that errors.As fills escapes, and must not be
// allocated on the success path.)
func remote(err error) bool {
	var ve *Error
	return errors.As(err, &ve) && ve.Remote
}

// backingOff fails a routed attempt at once when its instance has no
// connection and the last attempt to make one failed within the
// reconnect backoff: a .Instance call would wait for the next attempt,
// but a routed one is better sent elsewhere.
func (m *Messenger) backingOff(id peer.ID, handler string) error {
	m.mu.RLock()
	ps := m.peers[id]
	wait := ps != nil && ps.sess == nil && ps.failures > 0 && time.Since(ps.lastFail) < m.backoff(ps.failures)
	m.mu.RUnlock()
	if !wait {
		return nil
	}
	e := newError(CodePeerLost, handler, nil, "instance %s is unreachable: waiting to reconnect", id.Short())
	e.outcome = outcomeNotDelivered
	return e
}

// settle folds an attempt's end into its endpoint: an answer (success or
// an error the instance sent) is a latency sample. An attempt given up
// without an answer (its timeout, or a hedge that won elsewhere) took at
// least as long as it ran, which counts when it is more than the average:
// an instance whose attempts are all abandoned must not look fast.
// Consecutive attempts that timed out on their own bound eject the
// instance.
func (m *Messenger) settle(ep *endpoint, err error, start time.Time, callCtx context.Context) {
	now := time.Now()
	took := now.Sub(start)
	if err == nil || remote(err) {
		ep.sample(took, now.Unix())
		if ep.timeouts.Load() != 0 {
			ep.timeouts.Store(0)
		}
		return
	}
	if callCtx.Err() != nil {
		return // the caller gave up: that says nothing of the instance
	}
	if took > ep.latency(now.Unix()) && (errors.Is(err, ErrDeadlineExceeded) || errors.Is(err, ErrCanceled)) {
		ep.sample(took, now.Unix())
	}
	if errors.Is(err, ErrDeadlineExceeded) && ep.timeouts.Add(1) >= ejectTimeouts {
		m.eject(ep, "consecutive attempts timed out")
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
