package etcd

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// Watch implements discovery.Watcher: it lists the prefix, then watches
// it from the revision after the listing, so that nothing happens in
// between unseen. The client resumes a watch across reconnects by itself;
// when the watch ends anyway (history compacted, leader lost), Watch
// lists again and reports the difference.
func (r *Registry) Watch(ctx context.Context) (<-chan discovery.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(chan discovery.Change)
	go func() {
		defer close(out)
		known := make(discovery.Membership)
		for failures := 0; ctx.Err() == nil; {
			if r.watchOnce(ctx, known, out) {
				failures = 0
			} else {
				failures++
			}
			t := time.NewTimer(min(r.opts.TTL/3, (50*time.Millisecond)<<min(failures, 6)))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}()
	return out, nil
}

// List implements discovery.Lister: one read of the prefix.
func (r *Registry) List(ctx context.Context) ([]peer.Info, error) {
	all, _, err := r.list(ctx)
	return all, err
}

// list reads every entry of the prefix, and the revision it read at.
func (r *Registry) list(ctx context.Context) ([]peer.Info, int64, error) {
	lctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	resp, err := r.c.Get(lctx, r.opts.Prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return nil, 0, fmt.Errorf("discovery/etcd: list: %w", err)
	}
	all := make([]peer.Info, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if info, ok := r.entry(kv); ok {
			all = append(all, info)
		}
	}
	return all, resp.Header.Revision, nil
}

// watchOnce lists, then watches until the watch ends. It reports whether
// the listing succeeded.
func (r *Registry) watchOnce(ctx context.Context, known discovery.Membership, out chan<- discovery.Change) bool {
	all, rev, err := r.list(ctx)
	if err != nil {
		return false
	}
	if !send(ctx, out, known.Sync(all)...) {
		return true
	}
	wctx, cancelWatch := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancelWatch()
	wch := r.c.Watch(wctx, r.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	defer func() {
		// Drain so that the client's watch goroutine is not left
		// blocked on us.
		cancelWatch()
		for range wch {
		}
	}()
	for wr := range wch {
		if wr.Err() != nil {
			r.opts.Logger.Debug("discovery/etcd: watch ended; listing again", "err", wr.Err())
			return true
		}
		for _, ev := range wr.Events {
			c := discovery.Change{Kind: discovery.Delete}
			switch {
			case ev.Type == mvccpb.PUT:
				info, ok := r.entry(ev.Kv)
				if !ok {
					continue
				}
				c = discovery.Change{Kind: discovery.Put, Info: info}
			default:
				id, ok := r.idOf(ev.Kv.Key)
				if !ok {
					continue
				}
				c.Info.ID = id
			}
			if c, ok := known.Apply(c); ok && !send(ctx, out, c) {
				return true
			}
		}
	}
	return true
}

// entry decodes a key-value pair of the prefix; one that is not an
// instance entry yields false.
func (r *Registry) entry(kv *mvccpb.KeyValue) (peer.Info, bool) {
	id, ok := r.idOf(kv.Key)
	if !ok {
		return peer.Info{}, false
	}
	rec, err := discovery.DecodeRecord(kv.Value)
	if err != nil || rec.ID != id || rec.Validate() != nil {
		return peer.Info{}, false
	}
	return rec.Info, true
}

func send(ctx context.Context, out chan<- discovery.Change, cs ...discovery.Change) bool {
	for _, c := range cs {
		select {
		case out <- c:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
