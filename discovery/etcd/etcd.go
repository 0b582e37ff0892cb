package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// Options tune a Registry. The zero value of each field means its default.
type Options struct {
	// Prefix is put before every key; the instances of one cluster share
	// it. Zero: "/velo/peers/".
	Prefix string
	// TTL is the lease's time to live: an instance that dies without
	// withdrawing disappears within TTL. etcd counts in whole seconds
	// (TTL is rounded up) and grants at least its own minimum, one and a
	// half election timeouts (2 s with etcd's default 1 s election
	// timeout). Zero: 10 s.
	TTL time.Duration
	// Timeout bounds one request to etcd (a lookup, a grant, a put), so
	// that a call made while etcd is away fails instead of waiting for it.
	// Zero: 3 s.
	Timeout time.Duration
	// Logger receives what the registration and watch goroutines cannot
	// return to anyone (a lost lease, a failed re-registration). Nil: no
	// logging.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.TTL < 0 || o.Timeout < 0 {
		return o, errors.New("discovery/etcd: negative duration in options")
	}
	if o.Prefix == "" {
		o.Prefix = "/velo/peers/"
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// ttlSeconds is TTL in etcd's unit, rounded up.
func (o Options) ttlSeconds() int64 {
	return int64((o.TTL + time.Second - 1) / time.Second)
}

// Registry is a discovery backend over etcd v3: one key per instance,
// Prefix followed by its id in hexadecimal, whose value is its Info as
// JSON, attached to a lease that the registration keeps alive. It is safe
// for concurrent use and holds no goroutine of its own (each registration
// and each watch has one).
type Registry struct {
	c    *clientv3.Client
	opts Options
}

var (
	_ discovery.PeerDiscovery = (*Registry)(nil)
	_ discovery.Watcher       = (*Registry)(nil)
)

// New returns a Registry that uses c, which stays the caller's: the
// registry never closes it, and it must stay open until every
// registration and watch made through the registry has ended.
func New(c *clientv3.Client, opts Options) (*Registry, error) {
	if c == nil {
		return nil, errors.New("discovery/etcd: nil client")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Registry{c: c, opts: opts}, nil
}

func (r *Registry) key(id peer.ID) string { return r.opts.Prefix + id.String() }

// idOf returns the id a key names, if it is one of ours.
func (r *Registry) idOf(key []byte) (peer.ID, bool) {
	s, ok := strings.CutPrefix(string(key), r.opts.Prefix)
	if !ok {
		return peer.ID{}, false
	}
	id, err := peer.Parse(s)
	return id, err == nil
}

// Lookup implements discovery.PeerDiscovery.
func (r *Registry) Lookup(ctx context.Context, id peer.ID) (peer.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	resp, err := r.c.Get(ctx, r.key(id))
	if err != nil {
		return peer.Info{}, fmt.Errorf("discovery/etcd: lookup %s: %w", id.Short(), err)
	}
	if len(resp.Kvs) == 0 {
		return peer.Info{}, fmt.Errorf("%w: %s under %s", discovery.ErrNotFound, id, r.opts.Prefix)
	}
	rec, err := discovery.DecodeRecord(resp.Kvs[0].Value)
	if err != nil {
		return peer.Info{}, err
	}
	if rec.ID != id {
		return peer.Info{}, fmt.Errorf("discovery/etcd: key %s holds instance %s", r.key(id), rec.ID)
	}
	return rec.Info, nil
}

// Register implements discovery.PeerDiscovery: it grants a lease, puts the
// entry on it, and a goroutine keeps the lease alive. When keepalive
// fails (the lease expired while etcd was unreachable), the goroutine
// puts the entry again on a new lease as soon as etcd answers.
func (r *Registry) Register(ctx context.Context, info peer.Info) (discovery.Registration, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	rec, value, err := discovery.NewRecord(info)
	if err != nil {
		return nil, err
	}
	g := &registration{
		r:     r,
		id:    info.ID,
		key:   r.key(info.ID),
		token: rec.Token,
		value: string(value),
		lease: clientv3.NewLease(r.c),
		done:  make(chan struct{}),
	}
	if err := g.publish(ctx, true); err != nil {
		g.lease.Close()
		return nil, err
	}
	g.ctx, g.halt = context.WithCancel(context.Background())
	go g.run()
	return g, nil
}

type registration struct {
	r     *Registry
	id    peer.ID
	key   string
	token string
	// lease is the registration's own lease client: closing it ends the
	// keepalive goroutines it started, and nothing else.
	lease clientv3.Lease

	leaseMu sync.Mutex
	leaseID clientv3.LeaseID // guarded by leaseMu: the lease the entry is on
	value   string           // guarded by leaseMu: the entry as written

	ctx  context.Context // ends when the goroutine must stop (halt)
	halt context.CancelFunc
	done chan struct{} // closed when the goroutine returned

	closeMu  sync.Mutex
	closed   bool  // guarded by closeMu
	closeErr error // guarded by closeMu
}

// errSuperseded: a newer registration of the instance owns the key.
var errSuperseded = errors.New("discovery/etcd: a newer registration of this instance exists")

// publish grants a lease and puts the entry on it. Unless force (the
// first put, which is the newest registration), it leaves the key alone
// if a newer registration wrote it; the transaction compares the key's
// revision, so a registration racing this one is not overwritten either.
func (g *registration) publish(ctx context.Context, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, g.r.opts.Timeout)
	defer cancel()
	var modRev int64
	if !force {
		resp, err := g.r.c.Get(ctx, g.key)
		if err != nil {
			return fmt.Errorf("discovery/etcd: register %s: %w", g.id.Short(), err)
		}
		if len(resp.Kvs) > 0 {
			if rec, err := discovery.DecodeRecord(resp.Kvs[0].Value); err == nil && rec.Token != g.token {
				return errSuperseded
			}
			modRev = resp.Kvs[0].ModRevision
		}
	}
	grant, err := g.lease.Grant(ctx, g.r.opts.ttlSeconds())
	if err != nil {
		return fmt.Errorf("discovery/etcd: register %s: lease: %w", g.id.Short(), err)
	}
	value := g.currentValue()
	put := clientv3.OpPut(g.key, value, clientv3.WithLease(grant.ID))
	if force {
		_, err = g.r.c.Put(ctx, g.key, value, clientv3.WithLease(grant.ID))
	} else {
		var resp *clientv3.TxnResponse
		resp, err = g.r.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(g.key), "=", modRev)).Then(put).Commit()
		if err == nil && !resp.Succeeded {
			err = errors.New("the key changed meanwhile")
		}
	}
	if err != nil {
		// Best effort: the lease would expire on its own anyway.
		g.lease.Revoke(ctx, grant.ID)
		return fmt.Errorf("discovery/etcd: register %s: %w", g.id.Short(), err)
	}
	g.leaseMu.Lock()
	g.leaseID = grant.ID
	g.leaseMu.Unlock()
	return nil
}

func (g *registration) currentValue() string {
	g.leaseMu.Lock()
	defer g.leaseMu.Unlock()
	return g.value
}

// Update implements discovery.Registration: it puts the entry with info
// on the registration's lease, unless the registration was closed or a
// newer one owns the key. A lease lost meanwhile is the keepalive
// goroutine's to restore, and it publishes info.
func (g *registration) Update(ctx context.Context, info peer.Info) error {
	if err := discovery.CheckUpdate(g.id, info); err != nil {
		return err
	}
	b, err := discovery.Record{Info: info.Clone(), Token: g.token}.Encode()
	if err != nil {
		return err
	}
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return discovery.ErrClosed
	}
	g.leaseMu.Lock()
	g.value = string(b)
	lease := g.leaseID
	g.leaseMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, g.r.opts.Timeout)
	defer cancel()
	resp, err := g.r.c.Get(ctx, g.key)
	if err != nil {
		return fmt.Errorf("discovery/etcd: update %s: %w", g.id.Short(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil // the lease expired: run publishes the new value
	}
	if rec, err := discovery.DecodeRecord(resp.Kvs[0].Value); err == nil && rec.Token != g.token {
		return errSuperseded
	}
	put := clientv3.OpPut(g.key, string(b), clientv3.WithLease(lease))
	txn, err := g.r.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(g.key), "=", resp.Kvs[0].ModRevision)).Then(put).Commit()
	if err == nil && !txn.Succeeded {
		err = errors.New("the key changed meanwhile")
	}
	if err != nil {
		return fmt.Errorf("discovery/etcd: update %s: %w", g.id.Short(), err)
	}
	return nil
}

func (g *registration) currentLease() clientv3.LeaseID {
	g.leaseMu.Lock()
	defer g.leaseMu.Unlock()
	return g.leaseID
}

// run is the registration's goroutine: it keeps the lease alive, and when
// the keepalive channel closes (lease expired or revoked, etcd away for
// longer than the TTL), publishes the entry again on a new lease, trying
// from 100 ms apart up to a third of the TTL apart until etcd answers.
func (g *registration) run() {
	defer close(g.done)
	for {
		ch, err := g.lease.KeepAlive(g.ctx, g.currentLease())
		if err == nil {
			for range ch {
				// Responses only say the lease is alive; the channel
				// closing is the news.
			}
		}
		if g.ctx.Err() != nil {
			return
		}
		g.r.opts.Logger.Warn("discovery/etcd: lease lost; registering again", "instance", g.id.Short(), "err", err)
		for failures := 0; ; failures++ {
			err := g.publish(g.ctx, false)
			if g.ctx.Err() != nil {
				return
			}
			if err == nil {
				g.r.opts.Logger.Info("discovery/etcd: registration restored", "instance", g.id.Short(), "attempts", failures+1)
				break
			}
			if errors.Is(err, errSuperseded) {
				g.r.opts.Logger.Debug("discovery/etcd: not re-registering", "instance", g.id.Short(), "err", err)
			} else if failures == 0 || failures%20 == 0 {
				g.r.opts.Logger.Warn("discovery/etcd: re-registration failed", "instance", g.id.Short(), "err", err)
			}
			wait := min(g.r.opts.TTL/3, (100*time.Millisecond)<<min(failures, 6))
			t := time.NewTimer(wait)
			select {
			case <-g.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// stop ends the goroutine and the lease client without revoking the
// lease, as a dying process would; it may be called more than once.
func (g *registration) stop() {
	g.halt()
	<-g.done
}

// Close implements discovery.Registration: it stops the keepalive and
// revokes the lease, which deletes the entry at once. The lease is this
// registration's own, so a newer registration's entry stays.
func (g *registration) Close(ctx context.Context) error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return g.closeErr
	}
	g.closed = true
	g.stop()
	rctx, cancel := context.WithTimeout(ctx, g.r.opts.Timeout)
	_, err := g.lease.Revoke(rctx, g.currentLease())
	cancel()
	g.lease.Close()
	if err != nil && !isLeaseNotFound(err) {
		g.closeErr = fmt.Errorf("discovery/etcd: withdraw %s: %w", g.id.Short(), err)
	}
	return g.closeErr
}

func isLeaseNotFound(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// abandon stops the registration as a killed process would: no more
// keepalives, nothing revoked. Tests use it.
func (g *registration) abandon() {
	g.stop()
	g.lease.Close()
}
