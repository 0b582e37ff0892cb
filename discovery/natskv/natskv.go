package natskv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// Options tune a Registry. The zero value of each field means its default.
type Options struct {
	// Bucket is the key-value bucket every instance of a cluster shares.
	// Zero: "velo_peers".
	Bucket string
	// TTL is how long an entry lives after its last refresh: an instance
	// that dies without withdrawing disappears within TTL. It becomes the
	// bucket's TTL when this client creates the bucket; a bucket that
	// exists keeps its own TTL, and registrations refresh often enough for
	// whichever is shorter. At least 100 ms (the server's minimum).
	// Zero: 10 s.
	TTL time.Duration
	// Refresh is how often a registration writes its entry again. It must
	// be below TTL. Zero: TTL/3.
	Refresh time.Duration
	// Timeout bounds one request to the server (a lookup, a refresh), so
	// that a call made while the server is away fails instead of waiting
	// for the reconnect. Zero: 2 s.
	Timeout time.Duration
	// Storage and Replicas configure the bucket when this client creates
	// it. Zero: file storage, one replica.
	Storage  jetstream.StorageType
	Replicas int
	// Logger receives what the registration and watch goroutines cannot
	// return to anyone (a failed refresh). Nil: no logging.
	Logger *slog.Logger
}

// minTTL is the smallest MaxAge nats-server accepts for a stream.
const minTTL = 100 * time.Millisecond

func (o Options) withDefaults() (Options, error) {
	if o.TTL < 0 || o.Refresh < 0 || o.Timeout < 0 || o.Replicas < 0 {
		return o, errors.New("discovery/natskv: negative value in options")
	}
	if o.Bucket == "" {
		o.Bucket = "velo_peers"
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.TTL < minTTL {
		return o, fmt.Errorf("discovery/natskv: TTL %v is below the server's minimum of %v", o.TTL, minTTL)
	}
	if o.Refresh == 0 {
		o.Refresh = o.TTL / 3
	}
	if o.Refresh >= o.TTL {
		return o, fmt.Errorf("discovery/natskv: Refresh (%v) must be below TTL (%v)", o.Refresh, o.TTL)
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Registry is a discovery backend over a NATS JetStream key-value bucket:
// one key per instance (its id in hexadecimal), whose value is its Info.
// It is safe for concurrent use and holds no goroutine of its own (each
// registration and each watch has one).
type Registry struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options

	mu      sync.Mutex
	kv      jetstream.KeyValue // guarded by mu: nil until bound, and again after an error
	ttl     time.Duration      // guarded by mu: the bound bucket's TTL
	markers bool               // guarded by mu: the bucket reports expiries to watchers
}

var (
	_ discovery.PeerDiscovery = (*Registry)(nil)
	_ discovery.Watcher       = (*Registry)(nil)
)

// New returns a Registry that uses nc, which stays the caller's: the
// registry never closes it. Connect it with nats.MaxReconnects(-1) so that
// it outlives a server restart of any length; registrations write their
// entry again as soon as it reconnects. New does not contact the server:
// the bucket is bound (and created if missing) on first use.
func New(nc *nats.Conn, opts Options) (*Registry, error) {
	if nc == nil {
		return nil, errors.New("discovery/natskv: nil connection")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("discovery/natskv: %w", err)
	}
	return &Registry{nc: nc, js: js, opts: opts}, nil
}

func key(id peer.ID) string { return id.String() }

// bucket returns the bound bucket, binding it first, and creating it when
// it is missing (a fresh server, or one that lost its store).
func (r *Registry) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	kv := r.kv
	r.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := r.js.KeyValue(ctx, r.opts.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = r.create(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("discovery/natskv: bucket %s: %w", r.opts.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("discovery/natskv: bucket %s: %w", r.opts.Bucket, err)
	}
	r.mu.Lock()
	r.kv, r.ttl, r.markers = kv, st.TTL(), st.LimitMarkerTTL() > 0
	r.mu.Unlock()
	return kv, nil
}

// create makes the bucket: keys expire TTL after their last write, and
// the server leaves a marker when one does, so that watchers learn of it
// (servers before 2.11 cannot; watchers then list the bucket every TTL).
func (r *Registry) create(ctx context.Context) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:         r.opts.Bucket,
		Description:    "velo instances (github.com/velo-messenger/velo/discovery/natskv)",
		History:        1,
		TTL:            r.opts.TTL,
		LimitMarkerTTL: max(r.opts.TTL, time.Second), // the server's minimum is 1 s
		Storage:        r.opts.Storage,
		Replicas:       r.opts.Replicas,
	}
	kv, err := r.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		cfg.LimitMarkerTTL = 0
		kv, err = r.js.CreateKeyValue(ctx, cfg)
	}
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Another instance created it meanwhile, maybe with other options.
		return r.js.KeyValue(ctx, r.opts.Bucket)
	}
	return kv, err
}

// unbind drops the bound bucket after an error that may mean it is gone,
// so that the next call binds (or creates) it again.
func (r *Registry) unbind(kv jetstream.KeyValue) {
	r.mu.Lock()
	if r.kv == kv {
		r.kv = nil
	}
	r.mu.Unlock()
}

// keyError reports whether err is about a key, not the bucket or the
// connection.
func keyError(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyExists) ||
		errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// do runs op on the bound bucket within Timeout. If op fails for another
// reason than the key (the bucket vanished with a server that lost its
// store, a reconnect), it binds the bucket again and retries once.
func (r *Registry) do(ctx context.Context, op func(ctx context.Context, kv jetstream.KeyValue) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	var err error
	for range 2 {
		var kv jetstream.KeyValue
		kv, err = r.bucket(ctx)
		if err != nil {
			return err
		}
		err = op(ctx, kv)
		if err == nil || keyError(err) || ctx.Err() != nil {
			return err
		}
		r.unbind(kv)
	}
	return err
}

// Lookup implements discovery.PeerDiscovery.
func (r *Registry) Lookup(ctx context.Context, id peer.ID) (peer.Info, error) {
	var rec discovery.Record
	err := r.do(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		e, err := kv.Get(ctx, key(id))
		if err != nil {
			return err
		}
		rec, err = discovery.DecodeRecord(e.Value())
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return peer.Info{}, fmt.Errorf("%w: %s in bucket %s", discovery.ErrNotFound, id, r.opts.Bucket)
	}
	if err != nil {
		return peer.Info{}, fmt.Errorf("discovery/natskv: lookup %s: %w", id.Short(), err)
	}
	if rec.ID != id {
		return peer.Info{}, fmt.Errorf("discovery/natskv: entry %s holds instance %s", id, rec.ID)
	}
	return rec.Info, nil
}

// Register implements discovery.PeerDiscovery: it writes the entry, then
// a goroutine writes it again every Refresh, and at once when the
// connection comes back after an outage.
func (r *Registry) Register(ctx context.Context, info peer.Info) (discovery.Registration, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	rec, value, err := discovery.NewRecord(info)
	if err != nil {
		return nil, err
	}
	g := &registration{r: r, id: info.ID, token: rec.Token, value: value, done: make(chan struct{})}
	err = r.do(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		_, err := kv.Put(ctx, key(g.id), g.value)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("discovery/natskv: register %s: %w", info.ID.Short(), err)
	}
	g.ctx, g.halt = context.WithCancel(context.Background())
	// Listen before the goroutine starts, so a reconnect right after
	// Register is not missed.
	g.reconnected = r.nc.StatusChanged(nats.CONNECTED)
	go g.refresh()
	return g, nil
}

type registration struct {
	r     *Registry
	id    peer.ID
	token string

	mu    sync.Mutex
	value []byte // guarded by mu: the entry as written

	// ctx ends when the refresh goroutine must stop (halt).
	ctx         context.Context
	halt        context.CancelFunc
	done        chan struct{}    // closed when the refresh goroutine returned
	reconnected chan nats.Status // the connection came back

	closeMu  sync.Mutex
	closed   bool  // guarded by closeMu
	closeErr error // guarded by closeMu
}

// put writes the entry again unless a newer registration of the instance
// replaced it. Update and Create compare revisions, so a registration
// racing this one is not overwritten either.
func (g *registration) put(ctx context.Context) error {
	g.mu.Lock()
	value := g.value
	g.mu.Unlock()
	return g.r.do(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		e, err := kv.Get(ctx, key(g.id))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Expired during an outage, or the server lost its store.
			_, err = kv.Create(ctx, key(g.id), value)
			return err
		case err != nil:
			return err
		}
		if rec, err := discovery.DecodeRecord(e.Value()); err == nil && rec.Token != g.token {
			g.r.opts.Logger.Debug("discovery/natskv: a newer registration of this instance exists; not refreshing", "instance", g.id.Short())
			return nil
		}
		_, err = kv.Update(ctx, key(g.id), value, e.Revision())
		return err
	})
}

// Update implements discovery.Registration: it writes the entry with
// info, unless the registration was closed or a newer one replaced it.
func (g *registration) Update(ctx context.Context, info peer.Info) error {
	if err := discovery.CheckUpdate(g.id, info); err != nil {
		return err
	}
	value, err := discovery.Record{Info: info.Clone(), Token: g.token}.Encode()
	if err != nil {
		return err
	}
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return discovery.ErrClosed
	}
	g.mu.Lock()
	g.value = value
	g.mu.Unlock()
	if err := g.put(ctx); err != nil {
		return fmt.Errorf("discovery/natskv: update %s: %w", g.id.Short(), err)
	}
	return nil
}

// period is how often the entry must be written: Refresh, or a third of
// the bucket's TTL if that bucket, made by another instance, has a
// shorter one.
func (g *registration) period() time.Duration {
	g.r.mu.Lock()
	ttl := g.r.ttl
	g.r.mu.Unlock()
	p := g.r.opts.Refresh
	if ttl > 0 && ttl/3 < p {
		p = ttl / 3
	}
	return p
}

// refresh is the registration's goroutine. After a failed write it tries
// again sooner (from 100 ms, doubling up to the period); a reconnect
// triggers a write at once.
func (g *registration) refresh() {
	defer close(g.done)
	defer g.r.nc.RemoveStatusListener(g.reconnected)
	wait := g.period()
	t := time.NewTimer(wait)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		case <-g.reconnected:
			t.Stop()
		}
		err := g.put(g.ctx)
		if g.ctx.Err() != nil {
			return
		}
		wait = g.period()
		if err != nil {
			failures++
			if failures == 1 || failures%20 == 0 {
				g.r.opts.Logger.Warn("discovery/natskv: refresh failed", "instance", g.id.Short(), "failures", failures, "err", err)
			}
			wait = min(wait, (100*time.Millisecond)<<min(failures-1, 6))
		} else {
			if failures > 0 {
				g.r.opts.Logger.Info("discovery/natskv: registration restored", "instance", g.id.Short(), "after_failures", failures)
			}
			failures = 0
		}
		t.Reset(wait)
	}
}

// stop ends the refresh goroutine and waits for it; it may be called more
// than once.
func (g *registration) stop() {
	g.halt()
	<-g.done
}

// Close implements discovery.Registration: it stops the refreshes and
// deletes the key at once, unless a newer registration replaced it.
func (g *registration) Close(ctx context.Context) error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return g.closeErr
	}
	g.closed = true
	g.stop()
	err := g.r.do(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		e, err := kv.Get(ctx, key(g.id))
		if err != nil {
			return err
		}
		if rec, err := discovery.DecodeRecord(e.Value()); err == nil && rec.Token != g.token {
			return nil // a newer registration's entry
		}
		return kv.Delete(ctx, key(g.id), jetstream.LastRevision(e.Revision()))
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// Gone already, or rewritten since the Get by a newer registration.
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("discovery/natskv: withdraw %s: %w", g.id.Short(), err)
	}
	g.closeErr = err
	return err
}
