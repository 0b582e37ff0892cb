package credit

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	var mu sync.Mutex
	var w Window
	w.Init(&mu)
	closed := false
	isClosed := func() bool { return closed }

	mu.Lock()
	w.Set(10)
	if err := w.Wait(context.Background(), isClosed); err != nil {
		t.Fatal(err)
	}
	w.Take(25) // one frame may overdraw
	if d := w.Stalled(time.Now()); d != 0 {
		t.Errorf("Stalled = %v before anyone waited", d)
	}
	mu.Unlock()

	// A sender waits until credit comes back.
	done := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		done <- w.Wait(context.Background(), isClosed)
	}()
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	if d := w.Stalled(time.Now()); d < 10*time.Millisecond {
		t.Errorf("Stalled = %v while a sender waits", d)
	}
	w.Grant(10) // still -5: the sender waits on
	mu.Unlock()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v with no credit", err)
	case <-time.After(20 * time.Millisecond):
	}
	mu.Lock()
	w.Grant(10)
	mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A ctx that ends and a close each end a wait.
	mu.Lock()
	w.Take(100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	err := w.Wait(ctx, isClosed)
	cancel()
	if err == nil {
		t.Error("Wait with no credit returned nil when its ctx ended")
	}
	mu.Unlock()
	go func() {
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		closed = true
		w.Wake()
		mu.Unlock()
	}()
	mu.Lock()
	if err := w.Wait(context.Background(), isClosed); err != nil {
		t.Errorf("Wait ended by a close = %v, want nil (the caller reports the close)", err)
	}
	mu.Unlock()
}
