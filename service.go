package velo

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// An instance's user handlers are part of what it publishes: its
// peer.Info lists them for discovery, its hello for the peers it
// connects to. When they change after Build, the publisher goroutine
// updates the discovery registration and sends _handlers to every
// connected peer, so that routing everywhere learns who offers what.
// handlerGen numbers the changes; each session remembers the one its peer
// was last told of (toldGen), so that a peer whose hello was built before
// a change is told after it too.

// UnregisterHandler takes the handler named name out: requests that
// arrive from now on are answered with ErrHandlerNotFound, the ones
// already accepted run to their end, and the instance's published Info
// and its peers' routing stop listing it. The handler's actor stops once
// they are done (or at Shutdown).
func (m *Messenger) UnregisterHandler(name string) error {
	if system.IsReserved(name) {
		return fmt.Errorf("%w: name %q: names starting with '_' are reserved", ErrInvalidHandler, name)
	}
	m.hmu.Lock()
	defer m.hmu.Unlock()
	cur := *m.handlers.Load()
	e, ok := cur[name]
	if !ok {
		return newError(CodeHandlerNotFound, name, nil, "no handler %q is registered", name)
	}
	next := maps.Clone(cur)
	delete(next, name)
	m.handlers.Store(&next)
	e.gone.Store(true)
	m.retiring[e] = struct{}{}
	m.handlersChanged()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// Shutdown cuts this short through runCtx, after it stopped
		// the retiring actors itself.
		e.actor.Stop(m.runCtx)
		m.hmu.Lock()
		delete(m.retiring, e)
		m.hmu.Unlock()
	}()
	return nil
}

// handlersChanged records the user handlers after a registration or an
// unregistration, and wakes the publisher. m.hmu is held.
func (m *Messenger) handlersChanged() {
	names := m.handlerNames()
	m.mu.Lock()
	m.info.Handlers = names
	if ps := m.peers[m.id]; ps != nil {
		ps.info.Handlers = names
	}
	m.membershipChangedLocked()
	m.mu.Unlock()
	m.handlerGen.Add(1)
	m.poke()
}

// poke wakes the publisher without waiting.
func (m *Messenger) poke() {
	select {
	case m.publish <- struct{}{}:
	default:
	}
}

// publisher tells the peers and the discovery backend of changes to the
// handlers, coalescing those that come faster than it sends. A failed
// registration update is retried with the reconnect backoff until it
// succeeds or the next change supersedes it.
func (m *Messenger) publisher(published uint64) {
	defer m.wg.Done()
	var retry <-chan time.Time
	backoff := m.opts.ReconnectBackoff
	for {
		select {
		case <-m.closing:
			return
		case <-m.publish:
		case <-retry:
		}
		retry = nil
		m.tellPeers()
		gen := m.handlerGen.Load()
		if m.reg == nil || gen == published || m.draining() {
			continue
		}
		ctx, cancel := context.WithTimeout(m.runCtx, m.opts.DialTimeout)
		err := m.reg.Update(ctx, m.PeerInfo())
		cancel()
		if err != nil {
			if m.draining() {
				continue
			}
			m.log.Warn("velo: discovery: publishing the handlers failed; retrying", "err", err, "retry_in", backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, m.opts.MaxReconnectBackoff)
			continue
		}
		published, backoff = gen, m.opts.ReconnectBackoff
	}
}

// tellPeers sends _handlers to every connected peer not yet told of the
// latest change.
func (m *Messenger) tellPeers() {
	gen := m.handlerGen.Load()
	payload, err := system.EncodeNames(m.handlerNames())
	if err != nil {
		m.log.Error("velo: encoding the handler list", "err", err)
		return
	}
	m.mu.RLock()
	var stale []*session
	for s := range m.sessions {
		if s.greeted.Load() && !s.closing.Load() && s.tname != selfName && s.toldGen.Load() < gen {
			stale = append(stale, s)
		}
	}
	m.mu.RUnlock()
	for _, s := range stale {
		s.toldGen.Store(gen)
		ctx, cancel := context.WithTimeout(m.runCtx, m.opts.HandshakeTimeout)
		req := wire.Request{Kind: wire.KindAMSend, Handler: system.HandlersChanged, Payload: payload}
		if _, err := s.roundTrip(ctx, &req); err != nil {
			m.log.Debug("velo: telling a peer of the handlers failed", "peer", s.peerName(), "err", err)
		}
		cancel()
	}
}

// peerHandlersChanged takes a _handlers message: the peer's new list of
// handlers. Like an event outcome, it is believed only from a connection
// that can speak for the peer (see eventSourceTrusted).
func (m *Messenger) peerHandlersChanged(s *session, req *wire.Request) {
	names, err := system.DecodeNames(req.Payload)
	if err != nil || req.Kind != wire.KindAMSend {
		m.warn(m.peerLog, "velo: malformed handler list", "sender", s.peer.ID.Short(), "err", err)
		return
	}
	if !m.eventSourceTrusted(s) {
		m.warn(m.peerLog, "velo: handler list refused: not on a connection dialed to the peer", "sender", s.peer.ID.Short(), "addr", s.conn.RemoteAddr())
		return
	}
	names = sortedNames(names)
	m.mu.Lock()
	if ps := m.peers[s.peer.ID]; ps != nil {
		ps.info.Handlers, ps.toldHandlers = names, true
		m.membershipChangedLocked()
	}
	m.mu.Unlock()
}

// Ping asks the instance id to answer at once, and returns how long the
// answer took: the round trip over the connection calls use, through the
// peer's receive path (a connection is made first if there is none; that
// time is not counted).
func (m *Messenger) Ping(ctx context.Context, id peer.ID) (time.Duration, error) {
	if _, err := m.sessionFor(ctx, id, system.Ping); err != nil {
		return 0, err
	}
	start := time.Now()
	_, err := m.Unary(system.Ping).Instance(id).Send(ctx)
	return time.Since(start), err
}
