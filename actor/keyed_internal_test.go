package actor

import (
	"context"
	"testing"
	"time"
)

// TestIdleKeysLeaveNoEntry checks that an Ordered actor forgets keys that
// have gone idle, so its memory does not grow with the keys ever seen.
func TestIdleKeysLeaveNoEntry(t *testing.T) {
	a, err := New(Config[int, int]{
		Mode:    Ordered,
		Factory: func() func(context.Context, int) { return func(context.Context, int) {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	const keys = 3 * shrinkKeys
	for k := range keys {
		if err := a.Tell(context.Background(), k, k); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	x := a.exec.(*keyed[int, int])
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.keys) != 0 {
		t.Fatalf("%d keys still in the map after they went idle", len(x.keys))
	}
	if len(x.spare) > maxSpareQueues {
		t.Fatalf("%d spare queues kept, limit %d", len(x.spare), maxSpareQueues)
	}
}
