package velo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
)

// dialAttempt is one connection attempt, shared by every caller that needs
// the peer while it runs.
type dialAttempt struct {
	done chan struct{}
	err  error // set before done is closed
}

// startDial joins the running connection attempt to id or starts one. It
// returns the session instead if one opened meanwhile.
func (m *Messenger) startDial(id peer.ID) (*dialAttempt, *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.peers[id]
	if ps == nil { // forgotten since the caller looked (it left discovery)
		att := &dialAttempt{done: make(chan struct{}), err: newError(CodePeerUnknown, "", nil, "instance %s is no longer known", id)}
		close(att.done)
		return att, nil
	}
	if ps.sess != nil {
		return nil, ps.sess
	}
	if ps.dialing != nil {
		return ps.dialing, nil
	}
	if m.state.Load() >= stateClosing {
		// Checked under mu, which Shutdown takes to enter closing: no
		// dial goroutine starts after Shutdown began waiting for them.
		att := &dialAttempt{done: make(chan struct{}), err: newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())}
		close(att.done)
		return att, nil
	}
	att := &dialAttempt{done: make(chan struct{})}
	ps.dialing = att
	var delay time.Duration
	if ps.failures > 0 {
		delay = time.Until(ps.lastFail.Add(m.backoff(ps.failures)))
	}
	info := ps.info.Clone()
	m.wg.Add(1)
	go m.dial(ps, att, info, delay)
	return att, nil
}

// backoff is the pause before attempt n+1 after n consecutive failures.
func (m *Messenger) backoff(n int) time.Duration {
	d := m.opts.ReconnectBackoff
	for i := 1; i < n && d < m.opts.MaxReconnectBackoff; i++ {
		d *= 2
	}
	return min(d, m.opts.MaxReconnectBackoff)
}

// dial runs one connection attempt on a goroutine of the messenger's, so
// that no caller's cancellation aborts an attempt others wait for.
func (m *Messenger) dial(ps *peerState, att *dialAttempt, info peer.Info, delay time.Duration) {
	defer m.wg.Done()
	var s *session
	var err error
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.closing:
			err = newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())
		}
		t.Stop()
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(m.runCtx, m.opts.DialTimeout)
		s, err = m.connect(ctx, info)
		cancel()
	}
	m.mu.Lock()
	ps.dialing = nil
	if err != nil {
		ps.failures++
		ps.lastFail = time.Now()
		ps.stale = ps.discovered
		if m.state.Load() < stateClosing {
			m.eject(ps.ep, "cannot connect")
		}
	} else {
		m.readmit(ps.ep)
		ps.failures = 0
		if ps.sess == nil && !s.ended() {
			m.setCallSession(ps, s)
		}
		// The peer's hello on a connection we dialed speaks for it,
		// and is newer than what discovery said.
		ps.toldHandlers = true
		if ps.info.Service != s.peer.Service || !slices.Equal(ps.info.Handlers, s.peer.Handlers) {
			ps.info.Service, ps.info.Handlers = s.peer.Service, s.peer.Handlers
			m.membershipChangedLocked()
		}
	}
	att.err = err
	m.mu.Unlock()
	close(att.done)
}

// connect tries the transports in priority order that info has an address
// for, and returns the first session whose handshake succeeds.
func (m *Messenger) connect(ctx context.Context, info peer.Info) (*session, error) {
	if info.ID == m.id {
		// Calls to this instance never leave the process: they go over
		// an in-memory connection of its own.
		return m.dialVia(ctx, m.self, m.selfAddr, m.id)
	}
	var errs []error
	for _, t := range m.dialOrder(info) {
		addr, ok := info.Address(t.Name())
		if !ok {
			continue
		}
		s, err := m.dialVia(ctx, t, addr, info.ID)
		if err == nil {
			return s, nil
		}
		m.log.Debug("velo: connection attempt failed", "peer", info.ID.Short(), "transport", t.Name(), "addr", addr, "err", err)
		errs = append(errs, fmt.Errorf("%s %s: %w", t.Name(), addr, err))
	}
	if len(errs) == 0 {
		return nil, newError(CodePeerUnknown, "", nil, "instance %s has no address for any transport of this instance", info.ID)
	}
	if ctx.Err() != nil && m.state.Load() >= stateClosing {
		return nil, newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())
	}
	err := errors.Join(errs...)
	var ve *Error
	if len(errs) == 1 && errors.As(err, &ve) {
		return nil, err
	}
	return nil, newError(CodePeerLost, "", err, "cannot reach %s: %v", info.ID.Short(), err)
}

// dialOrder is the order connect tries transports for info: the order they
// were added, except that a transport that reports the peer's address as
// on this host (transport.Local, such as UDS) comes first. The handshake
// still checks who answers, so a path is never trusted on its own.
func (m *Messenger) dialOrder(info peer.Info) []transport.Transport {
	local := make([]transport.Transport, 0, len(m.transports))
	var rest []transport.Transport
	for _, t := range m.transports {
		addr, ok := info.Address(t.Name())
		if l, isLocal := t.(transport.Local); ok && isLocal && l.Local(addr) {
			local = append(local, t)
		} else {
			rest = append(rest, t)
		}
	}
	return append(local, rest...)
}

// Dial connects over the transport named tname to the instance that
// listens at addr, whichever it is, and returns what it said of itself in
// its hello. The instance is then known as RegisterPeer makes it known,
// with that address, and calls to its ID use the connection.
//
// It is for tools that have only an address (the velo command): the
// handshake takes the answering instance at its word. A service that
// knows the ids of its peers should use discovery or RegisterPeer, whose
// connections check who answers.
func (m *Messenger) Dial(ctx context.Context, tname, addr string) (peer.Info, error) {
	var t transport.Transport
	for _, x := range m.transports {
		if x.Name() == tname {
			t = x
		}
	}
	if t == nil {
		return peer.Info{}, newError(CodePeerUnknown, "", nil, "this instance has no %s transport", tname)
	}
	if m.state.Load() != stateRunning {
		return peer.Info{}, newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())
	}
	s, err := m.dialVia(ctx, t, addr, peer.ID{})
	if err != nil {
		var ve *Error
		if errors.As(err, &ve) {
			return peer.Info{}, err
		}
		return peer.Info{}, newError(CodePeerLost, "", err, "cannot reach %s %s: %v", tname, addr, err)
	}
	info := s.peer
	info.Addresses = map[string]string{tname: addr}
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.learn(info)
	ps.manual, ps.toldHandlers = true, true
	ps.info.Service, ps.info.Handlers = info.Service, info.Handlers
	m.vouchLocked(ps)
	if ps.sess == nil && !s.ended() {
		m.setCallSession(ps, s)
	}
	m.membershipChangedLocked()
	return ps.info.Clone(), nil
}

// dialVia opens a connection over t and runs the handshake on it; want,
// unless zero, is the instance that must answer.
func (m *Messenger) dialVia(ctx context.Context, t transport.Transport, addr string, want peer.ID) (*session, error) {
	var s *session
	_, err := t.Dial(ctx, addr, func(c transport.Conn) transport.Handler {
		s = newSession(m, c, t.Name(), true)
		m.track(s)
		return s
	})
	if err != nil {
		return nil, err
	}
	hello, err := m.helloPayload(s)
	if err != nil {
		s.close(err)
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, m.opts.HandshakeTimeout)
	defer cancel()
	req := wire.Request{Kind: wire.KindUnary, Handler: system.Hello, Payload: hello}
	if _, err := s.roundTrip(hctx, &req); err != nil {
		s.close(err)
		return nil, err
	}
	if !want.IsZero() && s.peer.ID != want {
		err := newError(CodePeerUnknown, "", nil, "%s answered as instance %s, want %s", addr, s.peer.ID, want)
		s.close(err)
		return nil, err
	}
	m.greeted(s)
	return s, nil
}
