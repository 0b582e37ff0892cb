package actor

import (
	"context"
	"math/bits"
	"sync"

	"github.com/velo-messenger/velo/mailbox"
)

// Limits on what an Ordered actor keeps once it goes idle (see also
// keyed.spareRoom):
const (
	maxSpareQueues = 64   // empty key queues kept
	shrinkKeys     = 1024 // a keys map that reached this size is remade once empty
)

// keyed runs an Ordered actor's messages: one lane per key, a queue
// drained by one goroutine at a time, so the messages of a key run one
// after another in the order they were told, and keys run in parallel.
//
// Two Tells for one key that are ordered by happens-before push in that
// order under mu, and one drainer pops them in that order: this is the
// whole ordering guarantee.
//
// A key is in the map exactly while its drainer runs, so an idle key costs
// nothing and memory does not grow with the keys ever seen.
type keyed[K comparable, M any] struct {
	a *Actor[K, M]

	mu       sync.Mutex // guards the fields below and the queues in keys
	keys     map[K]*mailbox.Ring[entry[M]]
	keysPeak int                       // most keys pending at once since keys was made
	spare    []*mailbox.Ring[entry[M]] // emptied key queues kept for reuse
	// spareRoom is how many more entries the spare queues may hold between
	// them: they start with one mailbox's worth, which is as much as all
	// the queues can ever need at once.
	spareRoom int
}

func newKeyed[K comparable, M any](a *Actor[K, M], capacity int) *keyed[K, M] {
	return &keyed[K, M]{
		a:    a,
		keys: make(map[K]*mailbox.Ring[entry[M]]),
		// A key queue never needs more than capacity entries, so its
		// ring never grows past the next power of two.
		spareRoom: max(4, 1<<bits.Len(uint(capacity-1))),
	}
}

// submit queues msg behind the others with its key, and starts the key's
// drainer if the key was idle.
func (k *keyed[K, M]) submit(ctx context.Context, key K, msg M) error {
	k.mu.Lock()
	q, busy := k.keys[key]
	if !busy {
		if n := len(k.spare); n > 0 {
			q = k.spare[n-1]
			k.spare = k.spare[:n-1]
			k.spareRoom += q.Cap()
		} else {
			q = new(mailbox.Ring[entry[M]])
		}
		k.keys[key] = q
		k.keysPeak = max(k.keysPeak, len(k.keys))
		k.a.work.add()
	}
	q.Push(entry[M]{ctx, msg})
	k.mu.Unlock()
	if !busy {
		go k.run(key, q)
	}
	return nil
}

// run is key's drainer: it runs the messages queued for key, one at a
// time, until its queue is empty; then it removes the key and exits.
func (k *keyed[K, M]) run(key K, q *mailbox.Ring[entry[M]]) {
	exited := false
	defer func() {
		if !exited {
			// A handler called runtime.Goexit; a fresh drainer
			// takes over the key and this one's unit.
			go k.run(key, q)
			return
		}
		k.a.work.done()
	}()
	for {
		k.mu.Lock()
		e, ok := q.Pop()
		if !ok {
			delete(k.keys, key)
			k.recycleLocked(q)
			k.mu.Unlock()
			exited = true
			return
		}
		k.mu.Unlock()
		k.a.deliver(e.ctx, e.msg)
	}
}

// recycleLocked keeps an emptied key queue for reuse, and remakes the keys
// map once it is empty after a peak (Go maps never shrink). mu must be
// held.
func (k *keyed[K, M]) recycleLocked(q *mailbox.Ring[entry[M]]) {
	if q.Cap() <= k.spareRoom && len(k.spare) < maxSpareQueues {
		k.spare = append(k.spare, q)
		k.spareRoom -= q.Cap()
	}
	if len(k.keys) == 0 && k.keysPeak >= shrinkKeys {
		k.keys = make(map[K]*mailbox.Ring[entry[M]])
		k.keysPeak = 0
	}
}

// drain empties every key's queue. The drainers stay: each finds its
// queue empty and removes its key.
func (k *keyed[K, M]) drain(dst []entry[M]) []entry[M] {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, q := range k.keys {
		dst = q.Drain(dst)
	}
	return dst
}

func (*keyed[K, M]) stop() {}
