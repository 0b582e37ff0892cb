package velo

import (
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// keepalive watches every connection: it pings one that has been silent
// for KeepaliveInterval, closes one that has been silent for
// KeepaliveTimeout (failing its calls with ErrPeerLost), and closes an
// inbound connection that has not completed its handshake in time.
func (m *Messenger) keepalive() {
	defer m.wg.Done()
	// A check notices a frame up to one tick after it came (see heard), and
	// a silence up to one tick after it ran out: ticks of a quarter of the
	// interval keep detection within KeepaliveTimeout plus half of it.
	tick := time.NewTicker(min(m.opts.KeepaliveInterval, m.opts.HandshakeTimeout) / 4)
	defer tick.Stop()
	for {
		select {
		case <-m.closing:
			return
		case <-tick.C:
		}
		now := time.Now()
		m.mu.RLock()
		sessions := make([]*session, 0, len(m.sessions))
		for s := range m.sessions {
			sessions = append(sessions, s)
		}
		m.mu.RUnlock()
		for _, s := range sessions {
			m.check(s, now)
		}
	}
}

func (m *Messenger) check(s *session, now time.Time) {
	if s.closing.Load() {
		return
	}
	if !s.ready() {
		if now.Sub(s.created) > m.opts.HandshakeTimeout {
			m.closeAside(s, newError(CodePeerLost, "", nil, "no handshake from %s within %v", s.conn.RemoteAddr(), m.opts.HandshakeTimeout))
		}
		return
	}
	heard := s.heard.Swap(false)
	f := s.finished.Load()
	progressed := f != s.lastFinished
	s.lastFinished = f
	stalled := s.stalled.Load() > 0
	if stalled && progressed {
		// Our receive path waits for room in a handler's mailbox: the
		// peer's frames are waiting to be read, not missing. That counts
		// as hearing from the peer as long as handlers finish requests of
		// this connection; a stall in which none finishes for
		// KeepaliveTimeout (handlers stuck, or answers that the peer
		// does not read) is silence like any other. A peer that vanished
		// during a stall is noticed once the backlog it left is worked
		// off.
		heard = true
	}
	if heard {
		s.lastRecv.Store(now.UnixNano())
	}
	if st, ok := s.conn.(transport.Staller); ok {
		// Frames from the peer do not make up for writes that it does
		// not take: every call of ours on the connection waits on them.
		if d := st.WriteStalled(now); d > m.opts.KeepaliveTimeout {
			m.closeAside(s, newError(CodePeerLost, "", nil, "%s took none of our writes for %v", s.peerName(), d.Round(time.Millisecond)))
			return
		}
	}
	idle := now.Sub(time.Unix(0, s.lastRecv.Load()))
	if idle > m.opts.KeepaliveTimeout {
		m.closeAside(s, newError(CodePeerLost, "", nil, "%s silent for %v", s.peerName(), idle.Round(time.Millisecond)))
		return
	}
	sinceSent := now.Sub(time.Unix(0, s.lastSend.Load()))
	if stalled {
		// A ping now would be answered by a pong that waits unread
		// behind the stall, and the peer's own pings get no answer: an
		// unasked pong tells it that this instance is alive and working
		// through its requests.
		if sinceSent >= m.opts.KeepaliveInterval {
			m.sendPing(s, now, true)
		}
		return
	}
	if idle >= m.opts.KeepaliveInterval && sinceSent >= m.opts.KeepaliveInterval {
		m.sendPing(s, now, false)
	}
}

// closeAside closes s on a goroutine of its own: a connection's close may
// wait for a write stuck on a peer that does not read (up to the
// transport's flush bound), and the keepalive goroutine must go on
// checking every other connection meanwhile.
func (m *Messenger) closeAside(s *session, reason error) {
	if s.closing.Swap(true) {
		return
	}
	m.wg.Go(func() { s.close(reason) })
}

// sendPing sends s's peer a ping (or, with pong, an unasked pong) and
// records the time. The write happens on a goroutine of its own: a peer
// that stopped reading must not stall the checks of every other
// connection.
func (m *Messenger) sendPing(s *session, now time.Time, pong bool) {
	s.lastSend.Store(now.UnixNano())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		var a [32]byte
		s.conn.WriteFrame(m.runCtx, wire.AppendPing(a[:0], pong, uint64(now.UnixNano())))
	}()
}
