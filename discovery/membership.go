package discovery

import (
	"maps"
	"slices"

	"github.com/velo-messenger/velo/peer"
)

// Membership is the set of instances a Watch has reported so far, keyed by
// id. Backends use it to turn what they read (a full listing after a
// reconnect, or one event) into the Changes their watchers expect, so
// that a repeated listing reports nothing and a vanished entry is reported
// as a Delete.
type Membership map[peer.ID]peer.Info

// Sync makes m equal to all and returns the changes that took it there:
// a Put for each instance that is new or whose addresses differ, then a
// Delete for each instance that is not in all. The Puts come in the order
// of all; the Deletes in id order.
func (m Membership) Sync(all []peer.Info) []Change {
	var out []Change
	seen := make(map[peer.ID]bool, len(all))
	for _, info := range all {
		seen[info.ID] = true
		if c, ok := m.Apply(Change{Kind: Put, Info: info}); ok {
			out = append(out, c)
		}
	}
	gone := slices.SortedFunc(maps.Keys(m), func(a, b peer.ID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range gone {
		if !seen[id] {
			delete(m, id)
			out = append(out, Change{Kind: Delete, Info: peer.Info{ID: id}})
		}
	}
	return out
}

// Apply records c in m and reports it back, unless it changes nothing: a
// Put of the Info already known, or a Delete of an unknown instance.
func (m Membership) Apply(c Change) (Change, bool) {
	switch c.Kind {
	case Put:
		if old, ok := m[c.Info.ID]; ok && old.Equal(c.Info) {
			return Change{}, false
		}
		c.Info = c.Info.Clone()
		m[c.Info.ID] = c.Info.Clone()
		return c, true
	case Delete:
		if _, ok := m[c.Info.ID]; !ok {
			return Change{}, false
		}
		delete(m, c.Info.ID)
		return Change{Kind: Delete, Info: peer.Info{ID: c.Info.ID}}, true
	}
	return Change{}, false
}
