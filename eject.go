package velo

import (
	"time"

	"github.com/velo-messenger/velo/peer"
)

// Outlier ejection. Routing stops picking an instance at once when it
// stops answering: calls of ours wait on its connection and nothing has
// come from it for Options.EjectAfter (a ping went out at half of that:
// a live instance answers pings from its receive path even when all its
// handlers are busy), or ejectTimeouts attempts in a row to it ran out of
// their own time. Keepalive pings it every half EjectAfter meanwhile; the
// first frame from it readmits it. The routed idempotent calls waiting on
// a silent instance fail at once, as of unknown outcome, so that they are
// retried elsewhere. If discovery no longer lists it either,
// its connection is closed: its calls fail with ErrPeerLost at once
// instead of at their deadlines (or at KeepaliveTimeout).

// ejectTimeouts is how many attempts in a row that time out eject an
// instance.
const ejectTimeouts = 3

// eject leaves ep out of routing picks.
func (m *Messenger) eject(ep *endpoint, why string) {
	if ep.ejected.CompareAndSwap(false, true) {
		m.ejected.Add(1)
		m.log.Info("velo: instance left out of routing", "peer", ep.id.Short(), "reason", why)
	}
}

// readmit puts ep back in the picks.
func (m *Messenger) readmit(ep *endpoint) {
	if ep.ejected.CompareAndSwap(true, false) {
		ep.timeouts.Store(0)
		m.ejected.Add(-1)
		m.log.Info("velo: instance back in routing", "peer", ep.id.Short())
	}
}

// watchHealth applies a keepalive verdict to routing: it runs on the
// keepalive goroutine after each check of s.
func (m *Messenger) watchHealth(s *session, st linkState, v keepaliveVerdict, now time.Time) {
	ep := s.ep.Load()
	if ep == nil || v.action == keepClose || s.tname == selfName {
		return
	}
	heard := v.lastRecv.Equal(now)
	switch {
	case v.silent:
		quiet := now.Sub(v.lastRecv).Round(time.Millisecond)
		m.eject(ep, "calls wait and it has sent nothing for "+quiet.String())
		// Idempotent routed calls waiting on it go elsewhere now.
		lost := withOutcome(newError(CodePeerLost, "", nil, "%s stopped answering (silent for %v)", s.peerName(), quiet), "", outcomeUnknown)
		if n := s.abandonSilent(lost); n > 0 {
			m.log.Debug("velo: idempotent calls moved off a silent instance", "peer", ep.id.Short(), "calls", n)
		}
		m.mu.RLock()
		ps := m.peers[ep.id]
		gone := ps != nil && ps.dropped && !ps.manual
		m.mu.RUnlock()
		if gone {
			m.closeAside(s, newError(CodePeerLost, "", nil, "%s is gone from discovery and silent for %v", s.peerName(), now.Sub(v.lastRecv).Round(time.Millisecond)))
		}
	case heard && st.ejected:
		m.readmit(ep)
	}
}

// probeUnreachable dials, in the background, the live instances left out
// of routing because no connection to them could be made, once their
// reconnect backoff has passed: nobody picks them, so nobody else would
// find out that they are back. It runs on the keepalive goroutine.
func (m *Messenger) probeUnreachable(now time.Time) {
	if m.ejected.Load() == 0 {
		return
	}
	var ids []peer.ID
	m.mu.RLock()
	for id, ps := range m.peers {
		if ps.ep.ejected.Load() && ps.sess == nil && ps.dialing == nil && ps.failures > 0 &&
			m.liveLocked(ps) && now.Sub(ps.lastFail) >= m.backoff(ps.failures) {
			ids = append(ids, id)
		}
	}
	m.mu.RUnlock()
	for _, id := range ids {
		m.startDial(id)
	}
}

// droppedLocked handles an instance that discovery no longer lists: its
// connections that keep calls of ours waiting in silence (for half the
// eject bound) are closed, failing those calls with ErrPeerLost now.
// m.mu is held.
func (m *Messenger) droppedLocked(ps *peerState) {
	now := time.Now()
	for s := range m.sessions {
		if !s.ready() || s.peer.ID != ps.info.ID || len(s.calls) == 0 || ps.manual {
			continue
		}
		quiet := now.Sub(time.Unix(0, s.lastRecv.Load()))
		if quiet >= m.opts.EjectAfter/2 || ps.ep.ejected.Load() {
			m.closeAside(s, newError(CodePeerLost, "", nil, "%s is gone from discovery and silent for %v", s.peerName(), quiet.Round(time.Millisecond)))
		}
	}
}
