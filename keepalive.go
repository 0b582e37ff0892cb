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
	tick := time.NewTicker(min(m.opts.KeepaliveInterval, m.opts.HandshakeTimeout, m.opts.EjectAfter) / 4)
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
		m.probeUnreachable(now)
	}
}

// linkState is what the keepalive decision knows of one connection at a
// check: its handshake, what the receive path saw since the last check,
// and the times the decision keeps.
type linkState struct {
	ready      bool          // the handshake completed
	age        time.Duration // since the connection was made
	heard      bool          // a frame other than a ping arrived since the last check
	progressed bool          // a request of the connection finished since the last check
	stalled    bool          // the receive path waits for room in a handler's mailbox
	lastRecv   time.Time     // when a check last counted the peer as heard
	lastSend   time.Time     // when the last ping or unasked pong was sent
	writeStall time.Duration // how long our writes have made no progress; 0 when none wait
	pending    bool          // calls of ours wait on the connection
	ejected    bool          // routing left the peer out (see eject.go)
}

// keepaliveTimes are the options the decision follows.
type keepaliveTimes struct {
	interval, timeout, handshake, eject time.Duration
}

// keepaliveAction is what a check does to a connection.
type keepaliveAction uint8

const (
	keepNothing keepaliveAction = iota
	keepPing                    // send a ping
	keepPong                    // send an unasked pong: we are alive, but not reading
	keepClose                   // close the connection: see closeWhy
)

// closeWhy says why a check closes a connection.
type closeWhy uint8

const (
	closeNoHandshake closeWhy = iota + 1 // no hello within the handshake timeout
	closeWritesStuck                     // the peer took none of our writes for the timeout
	closeSilent                          // nothing heard from the peer for the timeout
)

// keepaliveVerdict is the decision for one connection at one check.
type keepaliveVerdict struct {
	action   keepaliveAction
	why      closeWhy      // for keepClose
	after    time.Duration // for keepClose: how long the condition lasted
	lastRecv time.Time     // the connection's lastRecv after the check
	// silent: calls wait on the connection and nothing came for the
	// eject bound: routing should leave the peer out.
	silent bool
}

// keepaliveStep decides what a check at now does to a connection in state
// st. It has no I/O and reads no clock, so tests drive it through every
// case in microseconds; check gathers st and carries the verdict out.
func keepaliveStep(st linkState, now time.Time, t keepaliveTimes) keepaliveVerdict {
	v := keepaliveVerdict{lastRecv: st.lastRecv}
	if !st.ready {
		if st.age > t.handshake {
			v.action, v.why, v.after = keepClose, closeNoHandshake, t.handshake
		}
		return v
	}
	heard := st.heard
	if st.stalled && st.progressed {
		// Our receive path waits for room in a handler's mailbox: the
		// peer's frames are waiting to be read, not missing. That counts
		// as hearing from the peer as long as handlers finish requests of
		// this connection; a stall in which none finishes for the timeout
		// (handlers stuck, or answers that the peer does not read) is
		// silence like any other. A peer that vanished during a stall is
		// noticed once the backlog it left is worked off.
		heard = true
	}
	if heard {
		v.lastRecv = now
	}
	if st.writeStall > t.timeout {
		// Frames from the peer do not make up for writes that it does
		// not take: every call of ours on the connection waits on them.
		v.action, v.why, v.after = keepClose, closeWritesStuck, st.writeStall
		return v
	}
	idle := now.Sub(v.lastRecv)
	if idle > t.timeout {
		v.action, v.why, v.after = keepClose, closeSilent, idle
		return v
	}
	sinceSent := now.Sub(st.lastSend)
	// Calls that wait on a connection that went quiet: ping at half the
	// eject bound (a live peer answers at once, even with its handlers
	// all busy), and call the peer silent at the bound. A peer left out
	// of routing is pinged as often, until it answers.
	watched := (st.pending || st.ejected) && !st.stalled
	v.silent = st.pending && !st.stalled && idle > t.eject
	switch {
	case watched && idle >= t.eject/2 && sinceSent >= t.eject/2:
		v.action = keepPing
	case sinceSent < t.interval:
	case st.stalled:
		// A ping now would be answered by a pong that waits unread behind
		// the stall, and the peer's own pings get no answer: an unasked
		// pong tells it that this instance is alive and working through
		// its requests.
		v.action = keepPong
	case idle >= t.interval:
		v.action = keepPing
	}
	return v
}

// check runs the keepalive decision for s and acts on it.
func (m *Messenger) check(s *session, now time.Time) {
	if s.closing.Load() {
		return
	}
	st := s.linkState(now)
	v := keepaliveStep(st, now, keepaliveTimes{m.opts.KeepaliveInterval, m.opts.KeepaliveTimeout, m.opts.HandshakeTimeout, m.opts.EjectAfter})
	if !v.lastRecv.Equal(st.lastRecv) {
		s.lastRecv.Store(v.lastRecv.UnixNano())
	}
	m.watchHealth(s, st, v, now)
	switch v.action {
	case keepPing:
		m.sendPing(s, now, false)
	case keepPong:
		m.sendPing(s, now, true)
	case keepClose:
		var err *Error
		switch d := v.after.Round(time.Millisecond); v.why {
		case closeNoHandshake:
			err = newError(CodePeerLost, "", nil, "no handshake from %s within %v", s.conn.RemoteAddr(), d)
		case closeWritesStuck:
			err = newError(CodePeerLost, "", nil, "%s took none of our writes for %v", s.peerName(), d)
		default:
			err = newError(CodePeerLost, "", nil, "%s silent for %v", s.peerName(), d)
		}
		m.closeAside(s, err)
	}
}

// linkState reads what a keepalive check needs of s, and starts the next
// interval of observation: heard is cleared and the finished count noted.
// Only the keepalive goroutine calls it.
func (s *session) linkState(now time.Time) linkState {
	st := linkState{
		ready:    s.ready(),
		age:      now.Sub(s.created),
		lastRecv: time.Unix(0, s.lastRecv.Load()),
		lastSend: time.Unix(0, s.lastSend.Load()),
	}
	if !st.ready {
		return st
	}
	st.heard = s.heard.Swap(false)
	f := s.finished.Load()
	st.progressed = f != s.lastFinished
	s.lastFinished = f
	st.stalled = s.stalled.Load() > 0
	st.pending = len(s.calls) > 0
	if ep := s.ep.Load(); ep != nil {
		st.ejected = ep.ejected.Load()
	}
	if ws, ok := s.conn.(transport.Staller); ok {
		st.writeStall = ws.WriteStalled(now)
	}
	return st
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
