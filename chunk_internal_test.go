package velo

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAssemblyHeldChunks: chunks that come while a large frame's buffer is
// still being made are held, up to maxHeld; the next one waits for the
// buffer; once it is there, the held ones move in a piece at a time as
// more come, some of them placed straight into it, and the frame comes out
// whole and in order.
func TestAssemblyHeldChunks(t *testing.T) {
	const piece = 256 << 10
	total := 2*maxHeld + 3*piece + 17
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(rand.Uint32())
	}
	a := &assembly{total: total, ready: make(chan []byte, 1)}
	off := 0
	next := func() []byte {
		n := min(piece, total-off)
		d := bytes.Clone(want[off : off+n])
		off += n
		return d
	}
	// Held while the buffer is being made, up to maxHeld.
	for a.nheld+piece <= maxHeld {
		a.add(next(), false)
	}
	if a.buf != nil || a.nheld != maxHeld || a.got != maxHeld {
		t.Fatalf("before the buffer: %d bytes held, %d received, buffer %v; want %d held", a.nheld, a.got, a.buf != nil, maxHeld)
	}
	if a.place(piece) != nil {
		t.Fatal("place gave a buffer that is not made yet")
	}
	// One more would pass maxHeld: it waits for the buffer.
	added := make(chan struct{})
	go func() {
		a.add(next(), false)
		close(added)
	}()
	select {
	case <-added:
		t.Fatal("a chunk past maxHeld was held, not made to wait for the buffer")
	case <-time.After(50 * time.Millisecond):
	}
	a.ready <- make([]byte, 0, total)
	<-added
	if a.nheld >= maxHeld {
		t.Fatalf("after the buffer came: %d bytes still held", a.nheld)
	}
	// The rest: placed and added in turn, the held ones moving in meanwhile.
	for i := 0; off < total; i++ {
		n := min(piece, total-off)
		last := off+n == total
		if i%2 == 0 && !last {
			b := a.place(n)
			if b == nil {
				t.Fatalf("place(%d) at %d of %d: nil", n, off, total)
			}
			copy(b, want[off:off+n])
			off += n
			a.placed(n)
			continue
		}
		a.add(next(), last)
	}
	if a.nheld != 0 {
		t.Errorf("at the end %d bytes still held (a backlog that did not drain as chunks came)", a.nheld)
	}
	f := a.frame()
	if f == nil || !bytes.Equal(f, want) {
		t.Fatalf("the frame (%d bytes) is not the bytes sent (%d)", len(f), len(want))
	}
}

// TestAssemblyHoldsOneLargeChunk: a chunk larger than maxHeld (a
// whole-frame transport's chunks are of its frame limit) is held while the
// buffer is made, rather than making the receive path wait for it; the
// next one waits.
func TestAssemblyHoldsOneLargeChunk(t *testing.T) {
	big := maxHeld + 1
	a := &assembly{total: 3 * big, ready: make(chan []byte, 1)}
	addAsync := func(b byte) <-chan struct{} {
		added := make(chan struct{})
		go func() {
			a.add(bytes.Repeat([]byte{b}, big), false)
			close(added)
		}()
		return added
	}
	select {
	case <-addAsync(1):
	case <-time.After(5 * time.Second):
		t.Fatal("the first chunk, larger than maxHeld, waited for the buffer")
	}
	second := addAsync(2)
	select {
	case <-second:
		t.Fatal("a second chunk past maxHeld was held too")
	case <-time.After(50 * time.Millisecond):
	}
	a.ready <- make([]byte, 0, a.total)
	<-second
	a.add(bytes.Repeat([]byte{3}, big), true)
	f := a.frame()
	if f == nil || f[0] != 1 || f[big] != 2 || f[2*big] != 3 || f[len(f)-1] != 3 {
		t.Fatal("the frame is not the three chunks in order")
	}
}
