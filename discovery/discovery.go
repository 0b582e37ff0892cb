package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/velo-messenger/velo/peer"
)

// ErrNotFound is returned by Lookup for an instance the backend does not know.
var ErrNotFound = errors.New("discovery: instance not found")

// PeerDiscovery looks instances up and publishes this one.
// Implementations are safe for concurrent use.
type PeerDiscovery interface {
	// Lookup returns the current Info of id, or an error wrapping
	// ErrNotFound. Any other error means the backend could not be asked
	// (the messenger then keeps using the address it had).
	Lookup(ctx context.Context, id peer.ID) (peer.Info, error)
	// Register publishes info until the returned Registration is closed.
	// The registration keeps itself alive (leases, TTL refreshes) on its
	// own, and publishes info again when the backend lost it (a restarted
	// server, an expired lease). Registering an id that is registered
	// already replaces its Info: the newest registration wins, and closing
	// the older one does not withdraw the newer.
	Register(ctx context.Context, info peer.Info) (Registration, error)
}

// Registration is a published instance. Close withdraws it at once, so
// lookups stop finding it, and stops its keepalive goroutine; Close is
// idempotent. An instance that dies without Close disappears when its
// time to live runs out.
type Registration interface {
	// Update publishes info in place of what the registration published
	// (the messenger calls it when its handlers change); info has the
	// registered ID. What the registration publishes again later (after
	// a lost lease, a refresh) is info from then on. After Close it
	// fails.
	Update(ctx context.Context, info peer.Info) error
	Close(ctx context.Context) error
}

// ErrClosed is returned by Registration.Update after Close.
var ErrClosed = errors.New("discovery: registration closed")

// Watcher is implemented by backends that can report changes to the set of
// registered instances as they happen. The messenger does not need it
// (it looks up on demand); programs that want the membership, such as a
// dashboard or examples/cluster, type-assert a PeerDiscovery for it.
type Watcher interface {
	// Watch reports every instance registered now as a Put, then every
	// change after, until ctx ends; the channel is closed once the
	// goroutine feeding it has returned, so reading until it is closed
	// waits for that goroutine.
	//
	// Changes are level-based, not a log: applying them in order to a map
	// gives the current membership, but intermediate states may be
	// skipped, and a Put may repeat what was reported before (a backend
	// that lost its connection reports what it finds on reconnecting,
	// Puts and Deletes, as the difference from what it had reported).
	// A slow reader delays the changes it is sent; nothing is dropped
	// that the next change would not correct.
	Watch(ctx context.Context) (<-chan Change, error)
}

// Lister is implemented by backends that can list every registered
// instance at once. The messenger lists at Build, so that its first calls
// know every instance the backend knows, and again, at most every 100 ms,
// when a routed call finds no instance offering its handler, so that a
// call sent as soon as an instance appears finds it even before the
// Watch reports it.
type Lister interface {
	// List returns the Info of every instance registered now.
	List(ctx context.Context) ([]peer.Info, error)
}

// ChangeKind says what happened to an instance.
type ChangeKind uint8

const (
	// Put: the instance is registered, with the Info given (new, or its
	// addresses changed).
	Put ChangeKind = iota + 1
	// Delete: the instance is gone (withdrawn or expired). Only Info.ID
	// is meaningful.
	Delete
)

func (k ChangeKind) String() string {
	switch k {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// Change is one event of a Watch.
type Change struct {
	Kind ChangeKind
	Info peer.Info
}

// Memory is a PeerDiscovery for instances in one process, for tests and
// single-binary deployments. The zero value is ready to use.
type Memory struct {
	mu      sync.RWMutex
	peers   map[peer.ID]memEntry // guarded by mu
	changed chan struct{}        // guarded by mu: closed and replaced on every change
}

// memEntry is a registered Info and the registration that owns it.
type memEntry struct {
	info peer.Info
	reg  *memRegistration
}

var (
	_ PeerDiscovery = (*Memory)(nil)
	_ Watcher       = (*Memory)(nil)
	_ Lister        = (*Memory)(nil)
)

// NewMemory returns an empty in-memory registry.
func NewMemory() *Memory { return &Memory{} }

// Lookup implements PeerDiscovery.
func (m *Memory) Lookup(ctx context.Context, id peer.ID) (peer.Info, error) {
	if err := ctx.Err(); err != nil {
		return peer.Info{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.peers[id]
	if !ok {
		return peer.Info{}, ErrNotFound
	}
	return e.info.Clone(), nil
}

// Register implements PeerDiscovery.
func (m *Memory) Register(ctx context.Context, info peer.Info) (Registration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	r := &memRegistration{m: m, id: info.ID}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers == nil {
		m.peers = make(map[peer.ID]memEntry)
	}
	m.peers[info.ID] = memEntry{info: info.Clone(), reg: r}
	m.notifyLocked()
	return r, nil
}

// Watch implements Watcher.
func (m *Memory) Watch(ctx context.Context) (<-chan Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(chan Change)
	go func() {
		defer close(out)
		known := make(Membership)
		for {
			// Take the snapshot and the channel that announces the next
			// change under one lock: a change made after the snapshot
			// closes this very channel, so none is missed.
			m.mu.Lock()
			snap := make([]peer.Info, 0, len(m.peers))
			for _, e := range m.peers {
				snap = append(snap, e.info.Clone())
			}
			if m.changed == nil {
				m.changed = make(chan struct{})
			}
			next := m.changed
			m.mu.Unlock()
			for _, c := range known.Sync(snap) {
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-next:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// notifyLocked wakes every watcher; m.mu is held.
func (m *Memory) notifyLocked() {
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

type memRegistration struct {
	m    *Memory
	id   peer.ID
	once sync.Once
}

// List implements Lister.
func (m *Memory) List(ctx context.Context) ([]peer.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]peer.Info, 0, len(m.peers))
	for _, e := range m.peers {
		out = append(out, e.info.Clone())
	}
	return out, nil
}

// Update implements Registration.
func (r *memRegistration) Update(ctx context.Context, info peer.Info) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckUpdate(r.id, info); err != nil {
		return err
	}
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	e, ok := r.m.peers[r.id]
	if !ok || e.reg != r {
		return ErrClosed
	}
	r.m.peers[r.id] = memEntry{info: info.Clone(), reg: r}
	r.m.notifyLocked()
	return nil
}

// CheckUpdate reports what makes info unfit to update the registration
// of id.
func CheckUpdate(id peer.ID, info peer.Info) error {
	if info.ID != id {
		return fmt.Errorf("discovery: update of %s carries the id %s", id.Short(), info.ID.Short())
	}
	return info.Validate()
}

func (r *memRegistration) Close(context.Context) error {
	r.once.Do(func() {
		r.m.mu.Lock()
		defer r.m.mu.Unlock()
		// A newer registration of the same id is not ours to withdraw.
		if e, ok := r.m.peers[r.id]; ok && e.reg == r {
			delete(r.m.peers, r.id)
			r.m.notifyLocked()
		}
	})
	return nil
}
