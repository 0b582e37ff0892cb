package velo

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"
)

// Reusing the memory of large payloads. A payload that came in chunks is
// put back together in a buffer of its own, which velo hands to the
// handler or the caller and never touches again: the Go runtime frees it
// once it is garbage and, soon after, gives its pages back to the system,
// so the next large payload is received into pages the kernel must fault
// in and zero again. On a VM that costs about as much as moving the bytes
// (docs/performance.md). A user who is done with a large payload can say
// so (Messenger.ReleasePayload, HandlerBuilder.ReusePayload); velo then
// keeps its buffer a while and receives the next large payload of a
// fitting size into it.

// Bounds of what a messenger keeps.
const (
	// maxKeptPayloads is the most buffers a messenger keeps for reuse.
	maxKeptPayloads = 2
	// payloadIdle is how long a kept buffer may go unused before it is
	// let go.
	payloadIdle = 10 * time.Second
)

// payloads is a messenger's store of large payload buffers: those kept
// for reuse, and those handed out that may come back.
type payloads struct {
	mu   sync.Mutex
	kept []keptBuf
	// out holds the buffers handed out, keyed by a weak pointer to their
	// payload's first byte; an entry goes when its buffer comes back or
	// is collected.
	out map[weak.Pointer[byte]]outBuf
	// addrs counts the entries of out by address, so that give can turn a
	// slice that was never lent away without making a weak pointer (which
	// costs the object a handle of its own); lent is len(out), read
	// without the lock.
	addrs  map[uintptr]int
	lent   atomic.Int64
	idle   time.Duration // 0: payloadIdle
	timer  *time.Timer   // lets idle buffers go; nil when none are kept
	closed bool
	reused uint64 // buffers taken from kept
}

// keptBuf is a buffer kept for reuse.
type keptBuf struct {
	b  []byte    // all of it: len is cap
	at time.Time // when it was kept
}

// outBuf is a buffer handed out whose payload may come back.
type outBuf struct {
	frame weak.Pointer[byte] // the buffer's first byte
	size  int                // all of the buffer's bytes
	addr  uintptr            // the payload's first byte, for addrs
	// auto is set for a payload of a handler built with ReusePayload:
	// it comes back when the handler is done (give from the actor's
	// callbacks), never through ReleasePayload, so that a payload released
	// twice cannot take back the next one received into the same memory.
	auto    bool
	cleanup runtime.Cleanup
}

// take returns a kept buffer that holds n bytes, its length n and all of
// its capacity (at most twice n, so that a small frame does not hold a
// large buffer), or nil.
func (p *payloads) take(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, k := range p.kept {
		if c := cap(k.b); c >= n && c <= 2*n && (best < 0 || c < cap(p.kept[best].b)) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b := p.kept[best].b
	p.kept = slices.Delete(p.kept, best, best+1)
	p.reused++
	return b[:n]
}

// lend records that payload, part of the large frame buffer frame (with
// all of its capacity), is handed to user code, so that it may come back
// (give, with the same auto).
func (p *payloads) lend(frame, payload []byte, auto bool) {
	if len(payload) == 0 {
		return
	}
	key := weak.Make(unsafe.SliceData(payload))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.out == nil {
		p.out = make(map[weak.Pointer[byte]]outBuf)
		p.addrs = make(map[uintptr]int)
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(payload)))
	if old, ok := p.out[key]; ok {
		old.cleanup.Stop()
	} else {
		p.addrs[addr]++
		p.lent.Add(1)
	}
	p.out[key] = outBuf{
		frame: weak.Make(unsafe.SliceData(frame)),
		size:  cap(frame),
		addr:  addr,
		auto:  auto,
		// Once nobody holds the payload, its entry goes.
		cleanup: runtime.AddCleanup(unsafe.SliceData(payload), p.forget, key),
	}
}

// forget drops the entry of a buffer that was collected.
func (p *payloads) forget(key weak.Pointer[byte]) {
	p.mu.Lock()
	if o, ok := p.out[key]; ok {
		p.drop(key, o)
	}
	p.mu.Unlock()
}

// drop removes the entry key, o of out. Called with mu held.
func (p *payloads) drop(key weak.Pointer[byte], o outBuf) {
	delete(p.out, key)
	if p.addrs[o.addr]--; p.addrs[o.addr] <= 0 {
		delete(p.addrs, o.addr)
	}
	p.lent.Add(-1)
}

// give takes back the buffer of the payload whose first byte is first, if
// it is one lent with the same auto and still out, and keeps it for reuse.
func (p *payloads) give(first *byte, auto bool) {
	if first == nil || p.lent.Load() == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addrs[uintptr(unsafe.Pointer(first))] == 0 {
		return // never lent: no weak pointer needed to tell
	}
	key := weak.Make(first)
	o, ok := p.out[key]
	if !ok || o.auto != auto {
		return
	}
	p.drop(key, o)
	o.cleanup.Stop()
	start := o.frame.Value()
	if start == nil || p.closed {
		return
	}
	now := time.Now()
	if len(p.kept) == maxKeptPayloads {
		p.kept = slices.Delete(p.kept, 0, 1) // the oldest goes
	}
	p.kept = append(p.kept, keptBuf{b: unsafe.Slice(start, o.size), at: now})
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleFor(), p.trim)
	}
}

// idleFor is how long a kept buffer may go unused: payloadIdle, unless a
// test set idle.
func (p *payloads) idleFor() time.Duration {
	if p.idle > 0 {
		return p.idle
	}
	return payloadIdle
}

// trim lets go of the buffers kept longer than the idle time unused, and
// comes back while some are kept.
func (p *payloads) trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	idle := p.idleFor()
	now := time.Now()
	keep := p.kept[:0]
	next := time.Duration(-1)
	for _, k := range p.kept {
		if left := idle - now.Sub(k.at); left > 0 {
			keep = append(keep, k)
			if next < 0 || left < next {
				next = left
			}
		}
	}
	clear(p.kept[len(keep):])
	p.kept = keep
	if next < 0 {
		p.timer = nil
		return
	}
	p.timer.Reset(next)
}

// stats returns how many buffers were reused, and the bytes kept now.
func (p *payloads) stats() (reused uint64, kept int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.kept {
		kept += cap(k.b)
	}
	return p.reused, kept
}

// close lets every buffer go; nothing is kept after it.
func (p *payloads) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.kept = nil
	for _, o := range p.out {
		o.cleanup.Stop()
	}
	p.out, p.addrs = nil, nil
	p.lent.Store(0)
}

// ReleasePayload tells the messenger that the caller is done with b, a
// payload it received from it: a call's response, or the Payload of a
// handler built without ReusePayload. If b came in chunks (a frame over
// ChunkSize, or over the peer's smaller frame limit: see
// Options.MaxPayload), its memory is kept a while, and a later large
// payload of a fitting size is received into it instead of into fresh
// pages that the system must fault in and zero (see docs/streams.md,
// "Reusing payload memory"). Neither b nor any slice of it may be used
// afterwards, and b must be released once: once its memory holds another
// payload, releasing b again would hand that one back too. ReleasePayload
// does nothing for a slice velo did not receive in chunks. A typed call
// (TypedUnary) hands its response back itself once decoded, unless a
// client interceptor ran for it.
func (m *Messenger) ReleasePayload(b []byte) {
	if len(b) > 0 {
		m.payloads.give(unsafe.SliceData(b), false)
	}
}
