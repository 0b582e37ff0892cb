package velo

import (
	"errors"
	"fmt"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
)

// helloPayload is this instance's hello for the peer of s, which is
// recorded as told of the handlers it lists.
func (m *Messenger) helloPayload(s *session) ([]byte, error) {
	// The generation is read before the names: a change that lands in
	// between is told again (tellPeers), never missed.
	s.toldGen.Store(m.handlerGen.Load())
	// PeerInfo: Build may still be adding addresses while the first
	// peers connect.
	info := m.PeerInfo()
	info.Handlers = nil // they travel in the hello's own list
	h := system.HelloMsg{Info: info, Handlers: m.handlerNames(), MaxFrame: m.maxFrame(), Protocol: wire.Version, MaxPayload: m.opts.MaxPayload}
	return h.Encode()
}

// maxFrame is the largest frame every transport of this instance reads.
func (m *Messenger) maxFrame() int {
	if len(m.transports) == 0 {
		return wire.DefaultMaxFrame
	}
	n := m.transports[0].MaxFrame()
	for _, t := range m.transports[1:] {
		n = min(n, t.MaxFrame())
	}
	return n
}

// acceptHello completes the handshake of an inbound connection: it records
// who the peer is, answers with this instance's Hello, and only then makes
// the session available for calls, so that the peer sees the answer before
// any request of ours.
func (m *Messenger) acceptHello(s *session, req *wire.Request) error {
	in := newInbound(s, req)
	if m.state.Load() >= stateClosing {
		s.finish(in, nil, nil, newError(CodeShuttingDown, system.Hello, nil, "instance %s is shutting down", m.id.Short()))
		return errors.New("velo: handshake refused: shutting down")
	}
	h, err := system.DecodeHello(req.Payload)
	if err != nil {
		return fmt.Errorf("velo: handshake: %w", err)
	}
	if err := h.CheckProtocol(); err != nil {
		// Say why before the connection closes: the dialer's error then
		// names the versions, not a lost peer.
		s.finish(in, nil, nil, newError(CodeBadRequest, system.Hello, err, "%v", err))
		return fmt.Errorf("velo: handshake: %w", err)
	}
	s.identity = peerIdentity(s.conn)
	if err := m.checkIdentity(s, h.Info.ID); err != nil {
		s.finish(in, nil, nil, err)
		return err
	}
	if err := m.admitHello(s, h.Info.ID); err != nil {
		s.finish(in, nil, nil, err)
		return err
	}
	if err := s.completeHello(&h); err != nil {
		return err
	}
	reply, err := m.helloPayload(s)
	if err != nil {
		return err
	}
	s.finish(in, nil, reply, nil)
	m.greeted(s)
	m.mu.Lock()
	ps, known := m.peers[h.Info.ID]
	if !known || !ps.vouched {
		// A hello never replaces what RegisterPeer or discovery said.
		ps = m.learn(s.peer)
		ps.toldHandlers = true
		m.membershipChangedLocked()
	}
	if !known {
		ps.introduced = true
	}
	// A peer that introduced itself is asked about again, like one that
	// was looked up, when its connection fails: it may come back at
	// another address.
	if m.disc != nil && !ps.manual {
		ps.discovered = true
	}
	if ps.sess == nil && !ps.vouched {
		m.setCallSession(ps, s)
	}
	m.mu.Unlock()
	return nil
}

// admitHello refuses an inbound hello that claims this instance's own id,
// or the id of a peer that already has a live connection to us that it
// opened: one of the two is not who it says.
func (m *Messenger) admitHello(s *session, id peer.ID) error {
	if id == m.id && s.tname != selfName {
		m.warn(m.peerLog, "velo: handshake refused: a peer claims this instance's id", "addr", s.conn.RemoteAddr())
		return newError(CodePeerUnknown, system.Hello, nil, "%s claims to be this instance (%s)", s.conn.RemoteAddr(), id.Short())
	}
	o := m.inboundFrom(s, id)
	if o == nil {
		return nil
	}
	// A peer that reconnects at once may find its old connection not yet
	// seen closed: give that close a moment before refusing.
	t := time.NewTimer(helloConflictWait)
	defer t.Stop()
	select {
	case <-o.done:
		if o = m.inboundFrom(s, id); o == nil {
			return nil
		}
	case <-t.C:
	}
	m.warn(m.peerLog, "velo: handshake refused: instance already connected", "peer", id.Short(), "addr", s.conn.RemoteAddr(), "connected_from", o.conn.RemoteAddr())
	return newError(CodePeerUnknown, system.Hello, nil, "instance %s is already connected from %s", id.Short(), o.conn.RemoteAddr())
}

// helloConflictWait is how long an inbound hello that claims the id of a
// connected peer waits for that peer's other connection to close.
const helloConflictWait = 200 * time.Millisecond

// completeHello records what the peer said of itself in its Hello. It runs
// on the receive goroutine, so that frames after the handshake find the
// session ready.
func (s *session) completeHello(h *system.HelloMsg) error {
	if h.Info.ID.IsZero() {
		return fmt.Errorf("velo: handshake: peer sent a zero instance id")
	}
	if err := h.CheckProtocol(); err != nil {
		return fmt.Errorf("velo: handshake: %w", err)
	}
	if s.dialed {
		s.identity = peerIdentity(s.conn)
		if err := s.m.checkIdentity(s, h.Info.ID); err != nil {
			return err
		}
	}
	s.peer = h.Info
	s.peer.Handlers = sortedNames(h.Handlers)
	if rl, ok := s.conn.(transport.ReadLimiter); ok {
		rl.SetReadLimit(s.m.maxFrame())
	}
	if h.MaxFrame > 0 {
		s.peerMax.Store(int64(h.MaxFrame))
	}
	if h.MaxPayload > 0 {
		s.peerPayload.Store(int64(min(h.MaxPayload, MaxMaxPayload)))
	}
	s.helloDone.Store(true)
	s.m.peerUp(s)
	return nil
}
