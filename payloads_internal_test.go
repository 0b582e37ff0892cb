package velo

import (
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// lent hands out a frame of n bytes whose payload starts at byte 16, as
// the receive path does for a large frame, and returns the payload's
// first byte.
func lent(p *payloads, n int) *byte {
	frame := make([]byte, n)
	payload := frame[16:]
	p.lend(frame, payload, false)
	return &payload[0]
}

// A messenger keeps at most maxKeptPayloads buffers, the newest; a buffer
// is taken for a frame it holds, but not for one of less than half its
// size (2 MiB for 1 MiB is the most); what was taken is not kept twice.
func TestPayloadsKeepBounds(t *testing.T) {
	var p payloads
	defer p.close()
	sizes := []int{1 << 20, 2 << 20, 3 << 20}
	for _, n := range sizes {
		p.give(lent(&p, n), false)
	}
	if _, kept := p.stats(); kept != (2<<20)+(3<<20) {
		t.Fatalf("kept %d bytes; want the two newest buffers, %d", kept, (2<<20)+(3<<20))
	}
	if b := p.take(1<<20 - 1); b != nil {
		t.Errorf("a frame of 1 MiB - 1 took a buffer of %d bytes", cap(b))
	}
	if b := p.take(3<<20 - 100); b == nil || len(b) != 3<<20-100 || cap(b) != 3<<20 {
		t.Fatalf("take(3 MiB - 100): len %d cap %d; want the 3 MiB buffer, its length the frame's", len(b), cap(b))
	}
	if b := p.take(3<<20 - 100); b != nil {
		t.Error("the 3 MiB buffer was taken twice")
	}
	if reused, kept := p.stats(); reused != 1 || kept != 2<<20 {
		t.Errorf("reused %d, kept %d bytes; want 1 and 2 MiB", reused, kept)
	}
}

// Kept buffers go once unused for the idle time, and at close; nothing is
// kept after close.
func TestPayloadsLetIdleGo(t *testing.T) {
	p := payloads{idle: 50 * time.Millisecond}
	p.give(lent(&p, 1<<20), false)
	if _, kept := p.stats(); kept != 1<<20 {
		t.Fatalf("kept %d bytes; want 1 MiB", kept)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, kept := p.stats(); kept == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle buffer is still kept after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.give(lent(&p, 1<<20), false)
	later := lent(&p, 1<<20)
	p.close()
	p.give(later, false)
	if _, kept := p.stats(); kept != 0 {
		t.Errorf("kept %d bytes after close", kept)
	}
	if p.timer != nil {
		t.Error("the idle timer runs after close")
	}
}

// A payload lent to a handler built with ReusePayload comes back only from
// the handler's end (give with auto), and one lent to a caller only
// through ReleasePayload.
func TestPayloadsAutoApart(t *testing.T) {
	var p payloads
	defer p.close()
	frame := make([]byte, 1<<20)
	payload := frame[16:]
	p.lend(frame, payload, true)
	p.give(unsafe.SliceData(payload), false)
	if _, kept := p.stats(); kept != 0 {
		t.Fatal("ReleasePayload took back a ReusePayload handler's payload")
	}
	p.give(unsafe.SliceData(payload), true)
	if _, kept := p.stats(); kept != 1<<20 {
		t.Fatalf("kept %d bytes after the handler's end; want 1 MiB", kept)
	}
	other := lent(&p, 1<<20)
	p.give(other, true)
	if _, kept := p.stats(); kept != 1<<20 {
		t.Fatal("a handler's end took back a caller's payload")
	}
}

// The entry of a payload never handed back goes once the payload is
// collected.
func TestPayloadsForgetCollected(t *testing.T) {
	var p payloads
	defer p.close()
	lent(&p, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for p.lent.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left 5 s after their payloads became garbage", p.lent.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.out) != 0 || len(p.addrs) != 0 {
		t.Errorf("out %d, addrs %d entries; want none", len(p.out), len(p.addrs))
	}
}
