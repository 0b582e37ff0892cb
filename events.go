package velo

import (
	"context"
	"errors"

	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// Events returns the instance's event manager: events it owns, and proxies
// of events owned by other instances, reached over active messages (see
// package events and docs/events.md).
func (m *Messenger) Events() *events.Manager { return m.events }

// eventNetwork carries the event manager's messages as fire-and-forget
// active messages, dialing the peer if needed.
type eventNetwork struct{ m *Messenger }

// An outcome (_event_trigger) goes back on the connection the
// subscription came in on while it is open: the awaiter takes outcomes
// only on the connection it subscribed over (see eventSourceTrusted).
func (n eventNetwork) Send(ctx context.Context, to peer.ID, handler string, payload []byte) error {
	if handler == events.TriggerHandler {
		n.m.mu.RLock()
		s := n.m.eventPaths[to]
		n.m.mu.RUnlock()
		if s != nil && !s.closing.Load() {
			req := wire.Request{Kind: wire.KindAMSend, Handler: handler, Payload: payload}
			if _, err := s.roundTrip(ctx, &req); err == nil {
				return nil
			}
		}
	}
	return n.m.AMSend(handler).RawPayload(payload).Instance(to).Send(ctx)
}

// eventSourceTrusted reports whether event outcomes from s's peer may be
// taken from s: always on a connection we dialed, and on one the peer
// opened only while nothing vouched for the peer's address (it then is
// the only path to the peer, and the one its subscriptions went over).
func (m *Messenger) eventSourceTrusted(s *session) bool {
	if s.dialed {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ps := m.peers[s.peer.ID]
	return ps == nil || !ps.vouched
}

// peerUp records a session whose handshake completed; the first open
// session to a peer tells the event manager the peer is reachable. It runs
// on the session's receive goroutine, before any later frame of it.
func (m *Messenger) peerUp(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.learn(peer.Info{ID: s.peer.ID})
	s.ep.Store(ps.ep)
	if s.tname != selfName {
		m.log.Info("velo: connection up", "peer", s.peer.ID.Short(), "transport", s.tname, "dialed", s.dialed, "identity", s.identity)
	}
	ps.open++
	if ps.open == 1 {
		m.events.PeerConnected(s.peer.ID)
		m.membershipChangedLocked()
	}
}

// greeted records that both hellos of s have been exchanged, so that
// requests may go out on it, and has the peer told of a change to the
// handlers that its hello predates.
func (m *Messenger) greeted(s *session) {
	s.greeted.Store(true)
	if s.toldGen.Load() < m.handlerGen.Load() {
		m.poke()
	}
}

// peerDown is peerUp's counterpart, called with m.mu held when a ready
// session ends; the last one tells the event manager.
func (m *Messenger) peerDownLocked(s *session) {
	ps := m.peers[s.peer.ID]
	if ps == nil || ps.open == 0 {
		return
	}
	ps.open--
	if ps.open == 0 {
		m.events.PeerDisconnected(s.peer.ID)
		m.membershipChangedLocked()
	}
}

// deliverEvent hands an _event_* message (fire-and-forget, as eventNetwork
// sends them) to the manager on the receive path and reports whether it
// took the request. No handler is registered under these names: the
// messages run inline here, as Deliver takes one lock and never blocks on
// the network, and this bypasses the handler table on purpose: while the instance drains,
// requests to handlers are refused and their actors stop, but the events
// protocol must keep working until Events().Shutdown, which runs after the
// handlers finished: a draining handler may be awaiting a remote event
// whose trigger is on its way, and a subscriber must still be recorded so
// that the shutdown's poison reaches it.
func (m *Messenger) deliverEvent(s *session, req *wire.Request) bool {
	if !system.IsEvent(req.Handler) {
		return false
	}
	if req.Kind != wire.KindAMSend {
		s.finish(newInbound(s, req), nil, nil, newError(CodeBadRequest, req.Handler, nil, "event messages are one-way (AMSend)"))
		return true
	}
	if req.Handler == events.TriggerHandler && !m.eventSourceTrusted(s) {
		m.warn(m.peerLog, "velo: event outcome refused: not on a connection dialed to the owner", "sender", s.peer.ID.Short(), "addr", s.conn.RemoteAddr())
		return true
	}
	if req.Handler == events.SubscribeHandler {
		m.mu.Lock()
		m.eventPaths[s.peer.ID] = s // outcomes go back on this connection
		m.mu.Unlock()
	}
	err := m.events.Deliver(m.handlerCtx, s.peer.ID, req.Handler, req.Payload)
	if errors.Is(err, events.ErrMalformed) {
		m.warn(m.peerLog, "velo: malformed event message", "handler", req.Handler, "sender", s.peer.ID.Short(), "err", err)
	}
	return true
}
