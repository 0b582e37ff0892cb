// Package discovery defines how a messenger finds instances it has not been
// told about. A send to an unknown instance asks the PeerDiscovery given to
// the builder; an instance registers itself when it starts and withdraws
// when it shuts down. Backends live in subpackages; Memory, here, serves
// instances within one process.
package discovery

import (
	"context"
	"errors"
	"sync"

	"github.com/velo-messenger/velo/peer"
)

// ErrNotFound is returned by Lookup for an instance the backend does not know.
var ErrNotFound = errors.New("discovery: instance not found")

// PeerDiscovery looks instances up and publishes this one.
// Implementations are safe for concurrent use.
type PeerDiscovery interface {
	// Lookup returns the current Info of id, or an error wrapping
	// ErrNotFound.
	Lookup(ctx context.Context, id peer.ID) (peer.Info, error)
	// Register publishes info until the returned Registration is closed.
	// The registration keeps itself alive (leases, TTL refreshes) on its
	// own.
	Register(ctx context.Context, info peer.Info) (Registration, error)
}

// Registration is a published instance. Close withdraws it at once, so
// lookups stop finding it; Close is idempotent.
type Registration interface {
	Close(ctx context.Context) error
}

// Memory is a PeerDiscovery for instances in one process, for tests and
// single-binary deployments. The zero value is ready to use.
type Memory struct {
	mu    sync.RWMutex
	peers map[peer.ID]peer.Info // guarded by mu
}

var _ PeerDiscovery = (*Memory)(nil)

// NewMemory returns an empty in-memory registry.
func NewMemory() *Memory { return &Memory{} }

// Lookup implements PeerDiscovery.
func (m *Memory) Lookup(ctx context.Context, id peer.ID) (peer.Info, error) {
	if err := ctx.Err(); err != nil {
		return peer.Info{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	info, ok := m.peers[id]
	if !ok {
		return peer.Info{}, ErrNotFound
	}
	return info.Clone(), nil
}

// Register implements PeerDiscovery.
func (m *Memory) Register(ctx context.Context, info peer.Info) (Registration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers == nil {
		m.peers = make(map[peer.ID]peer.Info)
	}
	m.peers[info.ID] = info.Clone()
	return &memRegistration{m: m, id: info.ID}, nil
}

type memRegistration struct {
	m    *Memory
	id   peer.ID
	once sync.Once
}

func (r *memRegistration) Close(context.Context) error {
	r.once.Do(func() {
		r.m.mu.Lock()
		delete(r.m.peers, r.id)
		r.m.mu.Unlock()
	})
	return nil
}
