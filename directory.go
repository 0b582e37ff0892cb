package velo

import (
	"cmp"
	"context"
	"iter"
	"slices"
	"time"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// The directory is what this instance knows of who offers which handler:
// the peers' Info (service and handlers) from discovery, from their
// hellos and from their _handlers messages, and which of them are live.
// Routing reads it through a routeTable, an index rebuilt on the first
// pick after a change, so that a pick costs a map lookup and no lock.

// routeKey indexes the candidates for a handler, of one service or of
// any (all).
type routeKey struct {
	service string
	all     bool
	handler string
}

// routeTable is an immutable snapshot of the live instances.
type routeTable struct {
	byKey     map[routeKey][]*endpoint // sorted by id
	instances []peer.Info              // sorted by id
}

func (t *routeTable) candidates(service, handler string) []*endpoint {
	return t.byKey[routeKey{service: service, all: service == "", handler: handler}]
}

// membershipChangedLocked marks the route table stale and wakes those
// watching the instances. m.mu is held.
func (m *Messenger) membershipChangedLocked() {
	m.routesDirty.Store(true)
	close(m.changed)
	m.changed = make(chan struct{})
}

// routeTable returns the current table, rebuilding it if it is stale.
func (m *Messenger) routeTable() *routeTable {
	if !m.routesDirty.Load() {
		return m.routes.Load()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.routesDirty.Load() {
		m.routes.Store(m.buildRoutesLocked())
		m.routesDirty.Store(false)
	}
	return m.routes.Load()
}

// liveLocked reports whether ps is an instance calls may be routed to:
// this one, one connected, one registered by hand, or one the discovery
// backend lists (its Watch said so; without Watch, a lookup found it and
// no connection to it failed since).
func (m *Messenger) liveLocked(ps *peerState) bool {
	switch {
	case ps.info.ID == m.id, ps.open > 0, ps.manual, ps.listed:
		return true
	}
	return ps.discovered && !ps.stale && !m.watching
}

func (m *Messenger) buildRoutesLocked() *routeTable {
	t := &routeTable{byKey: make(map[routeKey][]*endpoint)}
	for _, ps := range m.peers {
		if !m.liveLocked(ps) || len(ps.info.Addresses) == 0 && ps.info.ID != m.id {
			continue
		}
		info := ps.info.Clone()
		if info.ID == m.id {
			info = m.info.Clone()
		}
		t.instances = append(t.instances, info)
		for _, h := range info.Handlers {
			k := routeKey{all: true, handler: h}
			t.byKey[k] = append(t.byKey[k], ps.ep)
			if info.Service != "" {
				k = routeKey{service: info.Service, handler: h}
				t.byKey[k] = append(t.byKey[k], ps.ep)
			}
		}
	}
	byID := func(a, b *endpoint) int { return slices.Compare(a.id[:], b.id[:]) }
	for _, eps := range t.byKey {
		slices.SortFunc(eps, byID)
	}
	slices.SortFunc(t.instances, func(a, b peer.Info) int { return slices.Compare(a.ID[:], b.ID[:]) })
	return t
}

// Instances returns the live instances of the named service (of every
// service, and of none, when service is empty), with the handlers each
// offers, sorted by id. An instance is live when it is connected, was
// registered with RegisterPeer, or the discovery backend lists it; this
// instance is among them.
func (m *Messenger) Instances(service string) []peer.Info {
	t := m.routeTable()
	var out []peer.Info
	for _, info := range t.instances {
		if service == "" || info.Service == service {
			out = append(out, info.Clone())
		}
	}
	return out
}

// WatchInstances yields Instances(service) at once, then again after
// every change to what this instance knows of them, until ctx ends or the
// loop stops. Changes that come faster than the loop takes them are
// coalesced: each value is the whole current list, never a difference.
//
//	for list := range m.WatchInstances(ctx, "workers") {
//		if len(list) >= 4 {
//			break
//		}
//	}
func (m *Messenger) WatchInstances(ctx context.Context, service string) iter.Seq[[]peer.Info] {
	return func(yield func([]peer.Info) bool) {
		for {
			m.mu.RLock()
			changed := m.changed
			m.mu.RUnlock()
			if !yield(m.Instances(service)) {
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-m.closing:
				return
			}
		}
	}
}

// watchDiscovery follows the backend's Watch: instances it lists are
// live and routed to; an instance it drops is not, once no connection to
// it is open. It runs until the messenger closes.
func (m *Messenger) watchDiscovery(ch <-chan discovery.Change) {
	defer m.wg.Done()
	for c := range ch {
		if c.Info.ID == m.id || c.Info.ID.IsZero() {
			continue
		}
		m.mu.Lock()
		switch c.Kind {
		case discovery.Put:
			m.listedLocked(c.Info)
		case discovery.Delete:
			if ps := m.peers[c.Info.ID]; ps != nil {
				ps.listed, ps.dropped = false, true
				// The next call asks the backend again rather than dial
				// the address it had.
				ps.stale = ps.discovered
				m.droppedLocked(ps)
				m.forgetLocked(ps)
			}
		}
		m.membershipChangedLocked()
		m.mu.Unlock()
	}
}

// listedLocked records an instance the backend lists. m.mu is held.
func (m *Messenger) listedLocked(info peer.Info) {
	if info.ID == m.id || info.Validate() != nil {
		return
	}
	ps := m.peers[info.ID]
	if ps == nil || !ps.manual {
		ps = m.learn(info)
		ps.discovered, ps.stale = true, false
		m.vouchLocked(ps)
	} else {
		// RegisterPeer's addresses stand; what the instance published of
		// itself is newer than what it was registered with.
		ps.info.Service, ps.info.Handlers = info.Service, slices.Clone(info.Handlers)
	}
	ps.listed, ps.dropped, ps.toldHandlers = true, false, true
	m.membershipChangedLocked()
}

// listEvery is the least time between two listings of the backend made
// because a routed call found no instance.
const listEvery = 100 * time.Millisecond

// list asks the backend for every instance it lists, if it can
// (discovery.Lister), and records them. Concurrent callers share one
// listing, and a listing is not repeated within listEvery; it reports
// whether it listed.
func (m *Messenger) list(ctx context.Context) bool {
	l, ok := m.disc.(discovery.Lister)
	if !ok {
		return false
	}
	m.listMu.Lock()
	if wait := m.listing; wait != nil {
		m.listMu.Unlock()
		select {
		case <-wait:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !m.listedAt.IsZero() && time.Since(m.listedAt) < listEvery {
		m.listMu.Unlock()
		return false
	}
	done := make(chan struct{})
	m.listing = done
	m.listMu.Unlock()

	lctx, cancel := context.WithTimeout(ctx, m.opts.DialTimeout)
	all, err := l.List(lctx)
	cancel()
	if err != nil {
		m.log.Debug("velo: discovery: listing failed", "err", err)
	}
	m.mu.Lock()
	for _, info := range all {
		m.listedLocked(info)
	}
	m.mu.Unlock()
	m.listMu.Lock()
	m.listing, m.listedAt = nil, time.Now()
	m.listMu.Unlock()
	close(done)
	return err == nil
}

// sortedNames returns names sorted, without repeats, in a slice of its own.
func sortedNames(names []string) []string {
	out := slices.Clone(names)
	slices.SortFunc(out, cmp.Compare[string])
	return slices.Compact(out)
}
