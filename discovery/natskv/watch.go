package natskv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// Watch implements discovery.Watcher with a key watcher on the bucket.
// The watcher is started again, reporting the difference from what was
// reported before, when the connection comes back after an outage, when
// it ends on its own, and every TTL if the server does not report
// expiries (before nats-server 2.11).
func (r *Registry) Watch(ctx context.Context) (<-chan discovery.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(chan discovery.Change)
	reconnected := r.nc.StatusChanged(nats.CONNECTED)
	go func() {
		defer close(out)
		defer r.nc.RemoveStatusListener(reconnected)
		w := &watch{r: r, out: out, reconnected: reconnected, known: make(discovery.Membership)}
		failures := 0
		for ctx.Err() == nil {
			// After a watcher that ran, start the next one after a short
			// pause (a watcher that keeps ending at once must not spin);
			// after one that could not start, back off, but go at once
			// when the connection comes back.
			pause := 50 * time.Millisecond
			if w.run(ctx) {
				failures = 0
			} else {
				failures++
				pause = min(r.opts.Refresh, (100*time.Millisecond)<<min(failures-1, 6))
			}
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
			case <-reconnected:
			case <-t.C:
			}
			t.Stop()
		}
	}()
	return out, nil
}

type watch struct {
	r           *Registry
	out         chan<- discovery.Change
	reconnected <-chan nats.Status
	known       discovery.Membership
}

// run starts one key watcher and feeds its changes until ctx ends or the
// watcher must be started again. It reports whether the watcher started.
func (w *watch) run(ctx context.Context) bool {
	kv, err := w.r.bucket(ctx)
	if err != nil {
		return false
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kw, err := kv.WatchAll(wctx)
	if err != nil {
		w.r.unbind(kv)
		return false
	}
	// Stop, then read what is still queued until the channel closes: the
	// watcher's callback blocks on a full channel, and the channel closes
	// only once that callback has returned.
	defer func() {
		kw.Stop()
		for range kw.Updates() {
		}
	}()

	w.r.mu.Lock()
	markers, ttl := w.r.markers, w.r.ttl
	w.r.mu.Unlock()
	var resync <-chan time.Time
	if !markers && ttl > 0 {
		t := time.NewTicker(ttl)
		defer t.Stop()
		resync = t.C
	}

	// The watcher first sends the latest entry of every key, then nil,
	// then each change as it happens.
	var initial []peer.Info
	synced := false
	for {
		select {
		case <-ctx.Done():
			return true
		case <-w.reconnected:
			return true
		case <-resync:
			return true
		case e, ok := <-kw.Updates():
			if !ok {
				return true
			}
			if !synced {
				if e == nil {
					synced = true
					if !w.send(ctx, w.known.Sync(initial)...) {
						return true
					}
					initial = nil
				} else if info, ok := w.entry(e); ok {
					initial = append(initial, info)
				}
				continue
			}
			if e == nil {
				continue
			}
			c := discovery.Change{Kind: discovery.Delete}
			if info, ok := w.entry(e); ok {
				c = discovery.Change{Kind: discovery.Put, Info: info}
			} else if id, err := peer.Parse(e.Key()); err == nil {
				c.Info.ID = id
			} else {
				continue
			}
			if c, ok := w.known.Apply(c); ok && !w.send(ctx, c) {
				return true
			}
		}
	}
}

// List implements discovery.Lister: a watcher's first pass over the
// bucket (the latest entry of every key), then it stops.
func (r *Registry) List(ctx context.Context) ([]peer.Info, error) {
	var out []peer.Info
	err := r.do(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		out = out[:0]
		kw, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
		if err != nil {
			return err
		}
		defer func() {
			kw.Stop()
			for range kw.Updates() {
			}
		}()
		for {
			select {
			case e, ok := <-kw.Updates():
				if !ok {
					return errors.New("watcher closed")
				}
				if e == nil { // the end of the first pass
					return nil
				}
				if info, ok := entryInfo(e); ok {
					out = append(out, info)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("discovery/natskv: list: %w", err)
	}
	return out, nil
}

// entry decodes a put; a delete, a purge, an expiry marker or a value that
// does not decode yields false.
func (w *watch) entry(e jetstream.KeyValueEntry) (peer.Info, bool) { return entryInfo(e) }

func entryInfo(e jetstream.KeyValueEntry) (peer.Info, bool) {
	if e.Operation() != jetstream.KeyValuePut {
		return peer.Info{}, false
	}
	rec, err := discovery.DecodeRecord(e.Value())
	if err != nil || rec.ID.String() != e.Key() || rec.Validate() != nil {
		return peer.Info{}, false
	}
	return rec.Info, true
}

func (w *watch) send(ctx context.Context, cs ...discovery.Change) bool {
	for _, c := range cs {
		select {
		case w.out <- c:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
