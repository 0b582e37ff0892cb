package mailbox_test

import (
	"slices"
	"testing"

	"github.com/velo-messenger/velo/mailbox"
)

func TestRingZeroValue(t *testing.T) {
	var r mailbox.Ring[string]
	if v, ok := r.Pop(); ok || v != "" || r.Len() != 0 || r.Cap() != 0 {
		t.Fatalf("zero Ring: Pop() = %q, %v; Len %d, Cap %d; want empty", v, ok, r.Len(), r.Cap())
	}
	if got := r.Drain(nil); got != nil {
		t.Fatalf("Drain on an empty ring = %v, want nil", got)
	}
}

func TestRing(t *testing.T) {
	var r mailbox.Ring[int]
	next, want := 0, 0
	// Interleave pushes and pops so the live values slide round the ring;
	// pops keep up, so it never holds more than a few values.
	for round := range 200 {
		for range round % 5 {
			r.Push(next)
			next++
		}
		for range round % 7 {
			v, ok := r.Pop()
			if !ok {
				if r.Len() != 0 {
					t.Fatalf("Pop failed with Len %d", r.Len())
				}
				break
			}
			if v != want {
				t.Fatalf("popped %d, want %d", v, want)
			}
			want++
		}
	}
	if r.Cap() > 8 {
		t.Fatalf("ring grew to %d though it never held more than 5", r.Cap())
	}
	// Grow while the live values wrap around the end of the ring.
	for range 3 {
		r.Push(next)
		next++
	}
	for range 2 {
		if v, _ := r.Pop(); v != want {
			t.Fatalf("popped %d, want %d", v, want)
		}
		want++
	}
	for range 40 {
		r.Push(next)
		next++
	}
	if r.Len() != next-want {
		t.Fatalf("Len() = %d, want %d", r.Len(), next-want)
	}
	for _, v := range r.Drain(nil) {
		if v != want {
			t.Fatalf("Drain gave %d, want %d", v, want)
		}
		want++
	}
	if want != next || r.Len() != 0 {
		t.Fatalf("%d of %d values came out, %d left", want, next, r.Len())
	}
}

// TestRingCapacity checks the growth rule: a power of two, at least 4,
// never more than twice the most values held at once.
func TestRingCapacity(t *testing.T) {
	tests := []struct {
		held, want int
	}{
		{1, 4}, {4, 4}, {5, 8}, {8, 8}, {9, 16}, {1000, 1024},
	}
	for _, tt := range tests {
		var r mailbox.Ring[int]
		for i := range tt.held {
			r.Push(i)
		}
		if r.Cap() != tt.want {
			t.Errorf("after %d pushes Cap() = %d, want %d", tt.held, r.Cap(), tt.want)
		}
		// Emptying and refilling to the same level does not grow it.
		got := r.Drain(nil)
		for i := range tt.held {
			r.Push(i)
		}
		if r.Cap() != tt.want || !slices.Equal(got, r.Drain(nil)) {
			t.Errorf("refilled to %d: Cap() = %d, want %d", tt.held, r.Cap(), tt.want)
		}
	}
}

func TestRingDrainAppends(t *testing.T) {
	var r mailbox.Ring[string]
	r.Push("b")
	r.Push("c")
	got := r.Drain([]string{"a"})
	if !slices.Equal(got, []string{"a", "b", "c"}) || r.Len() != 0 {
		t.Fatalf("Drain = %v with %d left, want [a b c] and 0", got, r.Len())
	}
	r.Push("d")
	if v, ok := r.Pop(); !ok || v != "d" {
		t.Fatalf("Pop after Drain = %q, %v; want d", v, ok)
	}
}
