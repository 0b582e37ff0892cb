package velo

import (
	"context"
	"errors"
	"time"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// peerState is what the messenger knows of one other instance.
type peerState struct {
	info     peer.Info
	sess     *session     // the connection calls use; nil when none is open
	dialing  *dialAttempt // non-nil while a connection attempt runs
	failures int          // consecutive failed attempts
	lastFail time.Time
	open     int // sessions to the peer whose handshake completed and that are still open
	// discovered: info came from the discovery backend, or from the
	// peer's own hello while a backend is configured; stale: a connection
	// to it failed since, so the next send asks again (the peer may have
	// restarted at another address).
	discovered, stale bool
	// manual: info came from RegisterPeer; discovery is never asked.
	manual bool
	// vouched: the addresses came from RegisterPeer or a discovery
	// lookup, not from the peer's own hello. Calls then go only over
	// connections dialed to them, a hello never replaces them, and
	// _event_trigger messages are taken only from those connections:
	// without authentication, a connection that says hello as this
	// instance may be anyone.
	vouched bool
	// introduced: the entry was made by the peer's own hello, not by
	// RegisterPeer or discovery; it is forgotten when its last connection
	// closes, so peers that come and go under new ids cost nothing.
	introduced bool
	// listed: the discovery backend's Watch lists the instance now;
	// dropped: its Watch reported it gone (not merely not yet listed).
	listed, dropped bool
	// toldHandlers: info.Handlers came from the instance itself (its
	// hello, its _handlers, or what it published to discovery), not from
	// RegisterPeer, which may predate its registrations.
	toldHandlers bool
	// ep is the instance's routing state; it lives as long as the entry.
	ep *endpoint
}

// RegisterPeer tells the messenger how to reach another instance. The
// connection opens on the first send. Registering an instance again
// replaces its addresses; an open connection stays in use.
func (m *Messenger) RegisterPeer(info peer.Info) error {
	if err := info.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.peers[info.ID]
	keep := old != nil && old.toldHandlers && len(info.Handlers) == 0 && info.Service == ""
	var svc string
	var handlers []string
	if keep { // what the instance said of itself outlives an Info without it
		svc, handlers = old.info.Service, old.info.Handlers
	}
	ps := m.learn(info)
	if keep {
		ps.info.Service, ps.info.Handlers = svc, handlers
	}
	ps.manual = true
	ps.discovered, ps.stale = false, false
	m.vouchLocked(ps)
	m.membershipChangedLocked()
	return nil
}

// vouchLocked marks ps's addresses as vouched for, and stops calls from
// using a connection the peer opened to us: the next call dials. m.mu is
// held.
func (m *Messenger) vouchLocked(ps *peerState) {
	ps.vouched = true
	if ps.sess != nil && !ps.sess.dialed {
		m.setCallSession(ps, nil)
		for o := range m.sessions {
			if o.dialed && o.ready() && !o.closing.Load() && o.peer.ID == ps.info.ID {
				m.setCallSession(ps, o)
				break
			}
		}
	}
}

// forgetLocked drops ps if nothing holds it: no connection open or being
// made, not registered by hand, not listed by discovery. Peers that come
// and go under new ids then cost nothing. m.mu is held.
func (m *Messenger) forgetLocked(ps *peerState) {
	if ps.sess != nil || ps.dialing != nil || ps.open > 0 || ps.manual || ps.listed || ps.info.ID == m.id {
		return
	}
	delete(m.peers, ps.info.ID)
	if ps.ep.ejected.CompareAndSwap(true, false) {
		m.ejected.Add(-1)
	}
	m.membershipChangedLocked()
}

// learn records info; m.mu is held.
func (m *Messenger) learn(info peer.Info) *peerState {
	ps := m.peers[info.ID]
	if ps == nil {
		ps = &peerState{ep: &endpoint{id: info.ID}}
		m.peers[info.ID] = ps
	}
	if len(info.Addresses) > 0 {
		ps.info = info.Clone()
	} else if ps.info.ID.IsZero() {
		ps.info.ID = info.ID
	}
	return ps
}

// sessionFor returns the open session to id, connecting first if there is
// none. Concurrent callers share one connection attempt.
func (m *Messenger) sessionFor(ctx context.Context, id peer.ID, handler string) (*session, error) {
	if id.IsZero() {
		return nil, newError(CodePeerUnknown, handler, nil, "no instance given: use Instance(id)")
	}
	if s := m.lastSess.Load(); s != nil && s.peer.ID == id && !s.ended() {
		return s, nil
	}
	for {
		m.mu.RLock()
		ps := m.peers[id]
		var s *session
		known, stale, discovered := false, false, false
		if ps != nil {
			s = ps.sess
			known, stale, discovered = len(ps.info.Addresses) > 0, ps.stale, ps.discovered
		}
		if s != nil && m.lastSess.Load() != s {
			m.lastSess.Store(s)
		}
		m.mu.RUnlock()
		if s != nil {
			if !s.ended() {
				return s, nil
			}
			// It ended a moment ago and is being forgotten: once it is,
			// look again (another connection, or a dial).
			if err := s.awaitForgotten(ctx, handler); err != nil {
				return nil, err
			}
			m.unsetEnded(id, s)
			continue
		}
		if m.state.Load() >= stateClosing {
			return nil, newError(CodeShuttingDown, handler, nil, "instance %s is shutting down", m.id.Short())
		}
		if !known {
			if err := m.discover(ctx, id, handler); err != nil {
				return nil, err
			}
		} else if stale && m.disc != nil {
			if err := m.discover(ctx, id, handler); err != nil {
				if errors.Is(err, discovery.ErrNotFound) {
					return nil, err
				}
				// The backend is unreachable: try the address we had.
				m.log.Debug("velo: discovery lookup failed; using the last known address", "peer", id.Short(), "err", err)
			}
		}
		att, s := m.startDial(id)
		if s != nil {
			if !s.ended() {
				return s, nil
			}
			if err := s.awaitForgotten(ctx, handler); err != nil {
				return nil, err
			}
			m.unsetEnded(id, s)
			continue
		}
		select {
		case <-att.done:
			if att.err != nil && discovered && m.disc != nil {
				// A peer that discovery told of cannot be reached: if the
				// backend no longer lists it, say so rather than that
				// the connection failed.
				if err := m.discover(ctx, id, handler); errors.Is(err, discovery.ErrNotFound) {
					return nil, err
				}
			}
			if att.err != nil {
				var ve *Error
				if errors.As(att.err, &ve) {
					e := *ve
					e.Handler = handler
					return nil, &e
				}
				return nil, att.err
			}
		case <-ctx.Done():
			return nil, ctxError(ctx, handler)
		}
	}
}

// setCallSession makes s (nil: none) the session that calls to ps's
// instance use, and empties the cache of the last session found
// (lastSess). m.mu is held for writing.
func (m *Messenger) setCallSession(ps *peerState, s *session) {
	ps.sess = s
	m.lastSess.Store(nil)
}

// unsetEnded stops calls to id from using s, which ended: a session that
// ended before it was made the peer's (a dial that finished as its
// connection broke) is not unset by sessionClosed, which ran before.
func (m *Messenger) unsetEnded(id peer.ID, s *session) {
	m.mu.Lock()
	if ps := m.peers[id]; ps != nil && ps.sess == s {
		m.setCallSession(ps, nil)
	}
	m.mu.Unlock()
}

// discover asks the discovery backend for an instance nobody registered.
func (m *Messenger) discover(ctx context.Context, id peer.ID, handler string) error {
	if m.disc == nil {
		return newError(CodePeerUnknown, handler, nil, "instance %s is not registered and no discovery is configured", id)
	}
	info, err := m.disc.Lookup(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx, handler)
		}
		return newError(CodePeerUnknown, handler, err, "instance %s: %v", id, err)
	}
	if info.ID != id {
		return newError(CodePeerUnknown, handler, nil, "discovery answered %s for %s", info.ID, id)
	}
	m.mu.Lock()
	ps := m.learn(info)
	ps.discovered, ps.stale, ps.toldHandlers = true, false, true
	m.vouchLocked(ps)
	m.membershipChangedLocked()
	m.mu.Unlock()
	return nil
}

// inboundFrom returns another live connection that the peer id opened to
// us, if there is one.
func (m *Messenger) inboundFrom(s *session, id peer.ID) *session {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for o := range m.sessions {
		if o != s && !o.dialed && o.ready() && !o.closing.Load() && o.peer.ID == id {
			return o
		}
	}
	return nil
}

func (m *Messenger) track(s *session) {
	m.mu.Lock()
	m.sessions[s] = struct{}{}
	m.nsessions.Store(int32(len(m.sessions)))
	m.mu.Unlock()
}

// sessionClosed forgets a session whose connection ended. If another open
// session to the same peer exists (both sides dialed at once), calls move
// to it.
func (m *Messenger) sessionClosed(s *session, reason error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, s)
	m.nsessions.Store(int32(len(m.sessions)))
	if !s.ready() {
		if !s.dialed {
			m.logBrokenHandshake(s, reason)
		}
		return
	}
	if m.eventPaths[s.peer.ID] == s {
		delete(m.eventPaths, s.peer.ID)
	}
	m.streamsSessionDown(s, reason)
	m.peerDownLocked(s)
	ps := m.peers[s.peer.ID]
	if ps == nil || ps.sess != s {
		return
	}
	ps.stale = ps.discovered
	m.setCallSession(ps, nil)
	for o := range m.sessions {
		if o.ready() && o.peer.ID == s.peer.ID && (o.dialed || !ps.vouched) {
			m.setCallSession(ps, o)
			break
		}
	}
	if ps.introduced && !ps.discovered {
		m.forgetLocked(ps)
	}
	if m.state.Load() < stateClosing && s.tname != selfName {
		m.log.Info("velo: connection down", "peer", s.peer.ID.Short(), "transport", s.tname, "reason", reason)
	}
}
