package events

import (
	"context"
	"slices"
	"time"

	"github.com/velo-messenger/velo/peer"
)

// link is the manager's state about one remote peer, in both roles: as the
// owner of events this instance awaits (proxies) and as a subscriber to
// this instance's events (subs). A goroutine runs for it only while it has
// messages to send or is retrying after a failure; every field is guarded
// by Manager.mu.
type link struct {
	id peer.ID

	proxies map[Handle]*cell    // remote events owned by id that are awaited here
	subs    map[Handle]struct{} // pending local events id subscribed to

	newSubs  []Handle // proxies whose subscription is not sent yet
	resync   bool     // the next round subscribes every proxy again
	triggers [][]byte // trigger messages to send to id

	// troubleSince is when sending to id began to fail (or id disconnected
	// while proxies waited on it); zero while all is well. Past
	// OwnerLostAfter from it, the peer is declared lost.
	troubleSince time.Time
	running      bool          // a runLink goroutine owns the sending
	kick         chan struct{} // wakes runLink from its backoff (capacity 1)
}

// linkLocked returns the link for id, creating it.
func (m *Manager) linkLocked(id peer.ID) *link {
	l := m.links[id]
	if l == nil {
		l = &link{
			id:      id,
			proxies: make(map[Handle]*cell),
			subs:    make(map[Handle]struct{}),
			kick:    make(chan struct{}, 1),
		}
		m.links[id] = l
	}
	return l
}

// dropIdleLocked forgets l once it holds nothing, so the links map follows
// the peers actually in use.
func (m *Manager) dropIdleLocked(l *link) {
	if !l.running && len(l.proxies) == 0 && len(l.subs) == 0 &&
		len(l.newSubs) == 0 && len(l.triggers) == 0 {
		delete(m.links, l.id)
	}
}

func (m *Manager) startLinkLocked(l *link) {
	if l.running || m.stopped {
		return
	}
	l.running = true
	m.wg.Add(1)
	go m.runLink(l)
}

func kick(l *link) {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// remoteAwaiterLocked implements the three tiers of Awaiter for a handle
// owned by another instance.
func (m *Manager) remoteAwaiterLocked(h Handle) *Awaiter {
	// Tier 1: completed recently.
	if err, ok := m.cache.Get(h); ok {
		return &Awaiter{h: h, err: err}
	}
	// Tier 2: already subscribed; share the proxy.
	l := m.linkLocked(h.Owner)
	if c := l.proxies[h]; c != nil {
		return &Awaiter{h: h, c: c}
	}
	// Tier 3: a new proxy, subscribed by the link goroutine.
	c := newCell()
	l.proxies[h] = c
	m.proxies++
	if !l.resync { // a resync subscribes every proxy, this one included
		l.newSubs = append(l.newSubs, h)
	}
	m.startLinkLocked(l)
	return &Awaiter{h: h, c: c}
}

// onSubscribe records from as a subscriber of the events hs, or answers at
// once for those that completed or are unknown. The check and the record
// happen under m.mu, the lock finishLocked holds while it reads the
// subscriber list, so a subscription racing the completion either is in
// that list or sees the outcome here: never neither.
func (m *Manager) onSubscribe(from peer.ID, hs []Handle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	l := m.linkLocked(from)
	var foreign error
	for _, h := range hs {
		if h.Owner != m.self {
			// The subscriber addressed the wrong instance; no answer of
			// ours could reach its proxy (triggers come from the owner).
			foreign = malformed("subscribe for %s sent to %s", h, m.self.Short())
			continue
		}
		s, ok := m.lookupLocked(h)
		switch {
		case !ok:
			l.triggers = append(l.triggers, appendOutcome(nil, h, m.missingKind(h), ""))
		case s.kind != kindPending:
			l.triggers = append(l.triggers, appendOutcome(nil, h, s.kind, s.reason))
		default:
			// A subscriber re-sends its subscriptions after a disconnect:
			// recording one twice must change nothing.
			if _, dup := l.subs[h]; !dup {
				l.subs[h] = struct{}{}
				s.subs = append(s.subs, from)
				m.subs++
			}
		}
	}
	if len(l.triggers) > 0 {
		m.startLinkLocked(l)
	}
	m.dropIdleLocked(l)
	return foreign
}

// onTrigger resolves the proxy of h with the outcome its owner sent,
// waking every local awaiter, and caches the outcome. A trigger with no
// proxy (a duplicate, or one for a proxy that already failed) is ignored.
func (m *Manager) onTrigger(from peer.ID, h Handle, k kind, reason string) error {
	if h.Owner != from {
		return malformed("trigger for %s sent by %s", h, from.Short())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	l := m.links[from]
	if l == nil {
		return nil
	}
	c := l.proxies[h]
	if c == nil {
		return nil
	}
	delete(l.proxies, h)
	m.proxies--
	err := outcomeError(h, k, reason)
	m.cache.Add(h, err)
	c.resolve(err)
	m.dropIdleLocked(l)
	return nil
}

// failProxiesLocked fails every awaiter of l's events with err. Nothing is
// cached: a later Awaiter for the same handle tries the owner again.
func (m *Manager) failProxiesLocked(l *link, err error) {
	for h, c := range l.proxies {
		c.resolve(err)
		delete(l.proxies, h)
		m.proxies--
	}
}

// dropSubsLocked forgets every subscription l's peer holds here.
func (m *Manager) dropSubsLocked(l *link) {
	for h := range l.subs {
		if s, ok := m.lookupLocked(h); ok {
			if i := slices.Index(s.subs, l.id); i >= 0 {
				s.subs = slices.Delete(s.subs, i, i+1)
			}
		}
	}
	m.subs -= len(l.subs)
	clear(l.subs)
}

// PeerDisconnected tells the manager that its last connection to id ended.
//
// As an owner, the manager drops id's subscriptions at once: a subscriber
// re-subscribes after a disconnect, and a re-subscription is idempotent and
// answered at once for events that completed meanwhile. As a subscriber,
// if it awaits events owned by id, it re-sends their subscriptions right
// away and retries with backoff until one send succeeds, or declares id
// lost after Options.OwnerLostAfter (awaiters then get ErrOwnerLost).
func (m *Manager) PeerDisconnected(id peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	l := m.links[id]
	if l == nil {
		return
	}
	m.dropSubsLocked(l)
	if len(l.proxies) > 0 {
		l.resync, l.newSubs = true, nil
		if l.troubleSince.IsZero() {
			l.troubleSince = time.Now()
		}
		m.startLinkLocked(l)
		kick(l)
	}
	m.dropIdleLocked(l)
}

// PeerConnected tells the manager that a connection to id is established.
// If the manager is retrying sends to id, it retries now instead of
// waiting out its backoff.
func (m *Manager) PeerConnected(id peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.links[id]; l != nil && !l.troubleSince.IsZero() {
		kick(l)
	}
}

// runLink sends what is queued for l's peer until nothing is left. When a
// send fails it keeps what was not sent, retries with a growing backoff and,
// once the peer has been in trouble for OwnerLostAfter, declares it lost.
// No lock is held across a send.
func (m *Manager) runLink(l *link) {
	defer m.wg.Done()
	backoff := m.backoffMin
	for {
		m.mu.Lock()
		if l.resync {
			l.resync = false
			l.newSubs = l.newSubs[:0]
			for h := range l.proxies {
				l.newSubs = append(l.newSubs, h)
			}
		}
		// Only proxies still waiting need a subscription.
		subs := slices.DeleteFunc(l.newSubs, func(h Handle) bool { return l.proxies[h] == nil })
		trig := l.triggers
		l.newSubs, l.triggers = nil, nil
		if (len(subs) == 0 && len(trig) == 0) || m.ctx.Err() != nil {
			l.running = false
			l.troubleSince = time.Time{}
			m.dropIdleLocked(l)
			m.mu.Unlock()
			return
		}
		since := l.troubleSince
		m.mu.Unlock()

		start := time.Now()
		sent, subsSent, err := m.sendRound(l.id, since, subs, trig)

		m.mu.Lock()
		if err == nil {
			if !l.resync {
				l.troubleSince = time.Time{}
				backoff = m.backoffMin
			}
			m.mu.Unlock()
			continue
		}
		if m.ctx.Err() != nil { // closing: drop the rest
			l.running = false
			l.newSubs, l.triggers, l.resync = nil, nil, false
			m.dropIdleLocked(l)
			m.mu.Unlock()
			return
		}
		// Keep what was not sent, in order, ahead of what came meanwhile.
		l.triggers = append(trig[sent:], l.triggers...)
		if !subsSent {
			// Possibly sent in part: subscribing again is harmless.
			l.resync = true
		}
		if l.troubleSince.IsZero() {
			l.troubleSince = start
		}
		left := m.opts.OwnerLostAfter - time.Since(l.troubleSince)
		if left <= 0 {
			m.loseLocked(l, err)
			m.mu.Unlock()
			continue
		}
		m.mu.Unlock()
		m.log.Debug("events: send failed, will retry", "peer", l.id.Short(), "in", min(backoff, left), "err", err)

		t := time.NewTimer(min(backoff, left))
		select {
		case <-t.C:
			backoff = min(2*backoff, m.backoffMax)
		case <-l.kick:
			backoff = m.backoffMin
		case <-m.ctx.Done():
		}
		t.Stop()
	}
}

// sendRound sends the triggers, then the subscriptions in batches. It
// returns how many triggers went out, whether every subscription did, and
// the first error.
func (m *Manager) sendRound(to peer.ID, since time.Time, subs []Handle, trig [][]byte) (sent int, subsSent bool, err error) {
	// One send never outlasts the lost-peer bound, so a send that hangs
	// cannot stretch that bound by more than itself.
	d := min(m.opts.SendTimeout, m.opts.OwnerLostAfter)
	if !since.IsZero() {
		d = min(d, m.opts.OwnerLostAfter-time.Since(since))
	}
	ctx, cancel := context.WithTimeout(m.ctx, max(d, time.Millisecond))
	defer cancel()
	for sent < len(trig) {
		if err = m.net.Send(ctx, to, TriggerHandler, trig[sent]); err != nil {
			return sent, len(subs) == 0, err
		}
		sent++
	}
	for batch := range slices.Chunk(subs, maxSubscribeBatch) {
		if err = m.net.Send(ctx, to, SubscribeHandler, appendSubscribe(nil, batch)); err != nil {
			return sent, false, err
		}
	}
	return sent, true, nil
}

// loseLocked gives up on l's peer: its events' awaiters fail with
// ErrOwnerLost, the triggers queued for it are dropped and its
// subscriptions forgotten (it re-subscribes if it comes back).
func (m *Manager) loseLocked(l *link, cause error) {
	m.log.Warn("events: peer unreachable, declared lost", "peer", l.id.Short(),
		"awaited_events", len(l.proxies), "dropped_triggers", len(l.triggers), "err", cause)
	m.failProxiesLocked(l, ownerLostError(l.id, cause))
	m.dropSubsLocked(l)
	l.newSubs, l.triggers, l.resync = nil, nil, false
	l.troubleSince = time.Time{}
}
