package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// Options tune a Registry. The zero value of each field means its default.
type Options struct {
	// TTL is how long an entry stays valid after its last refresh: an
	// instance that dies without withdrawing disappears from lookups
	// within TTL. Zero: 10 s.
	TTL time.Duration
	// Refresh is how often a registration rewrites its entry's expiry.
	// It must be below TTL. Zero: TTL/3, so two refreshes may fail before
	// the entry expires.
	Refresh time.Duration
	// PollInterval is how often Watch reads the file. Zero: 250 ms.
	PollInterval time.Duration
	// Logger receives the failures the registration goroutine cannot
	// return to anyone (a refresh that could not be written). Nil: no
	// logging.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.TTL < 0 || o.Refresh < 0 || o.PollInterval < 0 {
		return o, errors.New("discovery/file: negative duration in options")
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.Refresh == 0 {
		o.Refresh = o.TTL / 3
	}
	if o.Refresh >= o.TTL {
		return o, fmt.Errorf("discovery/file: Refresh (%v) must be below TTL (%v)", o.Refresh, o.TTL)
	}
	if o.PollInterval == 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Registry is a discovery backend over one JSON file that the processes of
// a host share. Every process opens its own Registry on the same path.
// It is safe for concurrent use and holds no goroutine of its own (each
// registration and each watch has one).
type Registry struct {
	path     string
	lockPath string
	opts     Options
}

var (
	_ discovery.PeerDiscovery = (*Registry)(nil)
	_ discovery.Watcher       = (*Registry)(nil)
)

// New returns a Registry over the file at path, creating its directory if
// it is missing. The file itself is created by the first registration; the
// lock file path+".lock" beside it is created on first use and never
// removed (removing a lock file while another process waits on it would
// let two writers in).
func New(path string, opts Options) (*Registry, error) {
	if path == "" {
		return nil, errors.New("discovery/file: empty path")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("discovery/file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("discovery/file: %w", err)
	}
	return &Registry{path: abs, lockPath: abs + ".lock", opts: opts}, nil
}

// Path is the registry file.
func (r *Registry) Path() string { return r.path }

// document is the registry file's content.
type document struct {
	Version   int               `json:"version"`
	Instances map[peer.ID]entry `json:"instances"`
}

// entry is one registered instance.
type entry struct {
	Addresses map[string]string `json:"addresses"`
	Service   string            `json:"service,omitempty"`
	Handlers  []string          `json:"handlers,omitempty"`
	// Expires is when the entry stops being valid, in Unix milliseconds
	// of the host's clock (every reader is on the same host).
	Expires int64 `json:"expires"`
	// Token names the registration that wrote the entry, so that a
	// registration refreshes and withdraws only its own entry, not that
	// of a newer registration of the same instance.
	Token string `json:"token"`
}

const formatVersion = 1

// info is the Info the entry publishes for id.
func (e entry) info(id peer.ID) peer.Info {
	return peer.Info{ID: id, Addresses: e.Addresses, Service: e.Service, Handlers: e.Handlers}
}

func (e entry) live(now time.Time) bool { return e.Expires > now.UnixMilli() }

// read parses the registry file. A missing file is an empty registry.
func (r *Registry) read() (document, error) {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return document{Version: formatVersion}, nil
	}
	if err != nil {
		return document{}, fmt.Errorf("discovery/file: %w", err)
	}
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return document{}, fmt.Errorf("discovery/file: %s: %w", r.path, err)
	}
	if d.Version != formatVersion {
		return document{}, fmt.Errorf("discovery/file: %s: format version %d, want %d", r.path, d.Version, formatVersion)
	}
	return d, nil
}

// write replaces the registry file with d: readers see the old file or the
// new one, never a part of either, because rename is atomic.
func (r *Registry) write(d document) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.path), "."+filepath.Base(r.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("discovery/file: %w", err)
	}
	err = errors.Join(writeAll(tmp, b), tmp.Sync(), tmp.Chmod(0o644), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), r.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("discovery/file: writing %s: %w", r.path, err)
	}
	return nil
}

func writeAll(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}

// update runs fn on the registry's entries, expired ones removed, under
// the file lock, and writes the result back if anything changed. A file
// that cannot be parsed is replaced: it holds only what live
// registrations write again within a refresh.
func (r *Registry) update(ctx context.Context, fn func(m map[peer.ID]entry, now time.Time) bool) error {
	unlock, err := lockFile(ctx, r.lockPath)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := r.read()
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return err
		}
		r.opts.Logger.Warn("discovery/file: replacing an unreadable registry", "path", r.path, "err", err)
		d = document{Version: formatVersion}
	}
	if d.Instances == nil {
		d.Instances = make(map[peer.ID]entry)
	}
	now := time.Now()
	changed := false
	for id, e := range d.Instances {
		if !e.live(now) {
			delete(d.Instances, id)
			changed = true
		}
	}
	if fn(d.Instances, now) {
		changed = true
	}
	if !changed {
		return nil
	}
	return r.write(d)
}

// Lookup implements discovery.PeerDiscovery. It reads the file without the
// lock: a rename never shows a half-written file.
func (r *Registry) Lookup(ctx context.Context, id peer.ID) (peer.Info, error) {
	if err := ctx.Err(); err != nil {
		return peer.Info{}, err
	}
	d, err := r.read()
	if err != nil {
		return peer.Info{}, err
	}
	e, ok := d.Instances[id]
	if !ok || !e.live(time.Now()) {
		return peer.Info{}, fmt.Errorf("%w: %s in %s", discovery.ErrNotFound, id, r.path)
	}
	return e.info(id), nil
}

// List implements discovery.Lister: the live entries of the file.
func (r *Registry) List(ctx context.Context) ([]peer.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.snapshot()
}

// snapshot returns the live entries of the file.
func (r *Registry) snapshot() ([]peer.Info, error) {
	d, err := r.read()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]peer.Info, 0, len(d.Instances))
	for id, e := range d.Instances {
		if e.live(now) {
			out = append(out, e.info(id))
		}
	}
	return out, nil
}

// Watch implements discovery.Watcher by reading the file every
// PollInterval: a change shows within that, an expiry within that past
// the entry's TTL. A file that cannot be read is skipped until it can be.
func (r *Registry) Watch(ctx context.Context) (<-chan discovery.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(chan discovery.Change)
	go func() {
		defer close(out)
		known := make(discovery.Membership)
		tick := time.NewTicker(r.opts.PollInterval)
		defer tick.Stop()
		for {
			if snap, err := r.snapshot(); err == nil {
				for _, c := range known.Sync(snap) {
					select {
					case out <- c:
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Register implements discovery.PeerDiscovery: it writes the entry, then
// a goroutine refreshes its expiry every Refresh until Close.
func (r *Registry) Register(ctx context.Context, info peer.Info) (discovery.Registration, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	var tok [12]byte
	rand.Read(tok[:])
	g := &registration{
		r:     r,
		id:    info.ID,
		info:  info.Clone(),
		token: hex.EncodeToString(tok[:]),
		done:  make(chan struct{}),
	}
	if err := g.put(ctx, true); err != nil {
		return nil, err
	}
	g.ctx, g.halt = context.WithCancel(context.Background())
	go g.refresh()
	return g, nil
}

type registration struct {
	r     *Registry
	id    peer.ID
	token string

	mu   sync.Mutex
	info peer.Info // guarded by mu: what the entry publishes

	// ctx ends when the refresh goroutine must stop (halt), which also
	// ends a refresh waiting for the lock.
	ctx  context.Context
	halt context.CancelFunc
	done chan struct{} // closed when the refresh goroutine returned

	closeMu  sync.Mutex
	closed   bool  // guarded by closeMu
	closeErr error // guarded by closeMu
}

// put writes the entry with a fresh expiry. A newer registration of the
// same instance is left alone, unless force (the first write of a
// registration, which is the newest).
func (g *registration) put(ctx context.Context, force bool) error {
	g.mu.Lock()
	info := g.info
	g.mu.Unlock()
	superseded := false
	err := g.r.update(ctx, func(m map[peer.ID]entry, now time.Time) bool {
		if e, ok := m[info.ID]; ok && e.Token != g.token && !force {
			superseded = true
			return false
		}
		m[info.ID] = entry{
			Addresses: info.Addresses,
			Service:   info.Service,
			Handlers:  info.Handlers,
			Expires:   now.Add(g.r.opts.TTL).UnixMilli(),
			Token:     g.token,
		}
		return true
	})
	if superseded {
		g.r.opts.Logger.Debug("discovery/file: a newer registration of this instance exists; not refreshing", "instance", info.ID.Short())
	}
	return err
}

// Update implements discovery.Registration: it rewrites the entry with
// info, unless the registration was closed or a newer one replaced it.
func (g *registration) Update(ctx context.Context, info peer.Info) error {
	if err := discovery.CheckUpdate(g.id, info); err != nil {
		return err
	}
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return discovery.ErrClosed
	}
	g.mu.Lock()
	g.info = info.Clone()
	g.mu.Unlock()
	return g.put(ctx, false)
}

// refresh is the registration's goroutine: it rewrites the expiry every
// Refresh. A failed refresh is logged and tried again at the next tick;
// an entry that vanished (the file was removed) is written again.
func (g *registration) refresh() {
	defer close(g.done)
	tick := time.NewTicker(g.r.opts.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(g.ctx, g.r.opts.Refresh)
		err := g.put(ctx, false)
		cancel()
		if err != nil && g.ctx.Err() == nil {
			g.r.opts.Logger.Warn("discovery/file: refresh failed", "instance", g.id.Short(), "path", g.r.path, "err", err)
		}
	}
}

// stop ends the refresh goroutine and waits for it; it may be called more
// than once.
func (g *registration) stop() {
	g.halt()
	<-g.done
}

// Close implements discovery.Registration: it stops the refreshes and
// removes the entry at once, unless a newer registration replaced it.
func (g *registration) Close(ctx context.Context) error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return g.closeErr
	}
	g.closed = true
	g.stop()
	g.closeErr = g.r.update(ctx, func(m map[peer.ID]entry, _ time.Time) bool {
		if e, ok := m[g.id]; ok && e.Token == g.token {
			delete(m, g.id)
			return true
		}
		return false
	})
	return g.closeErr
}
