package actor

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/mailbox"
)

func TestSlotsNeverExceedCapacity(t *testing.T) {
	const capacity, senders, each = 4, 16, 2000
	s := newSlots(capacity, mailbox.Block)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := s.acquire(context.Background()); err != nil {
					t.Error(err)
					return
				}
				n := held.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				held.Add(-1)
				s.release()
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > capacity {
		t.Fatalf("%d slots held at once, capacity %d", p, capacity)
	}
	if n := s.len(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
}

func TestSlotsBlockWaitsForRelease(t *testing.T) {
	s := newSlots(1, mailbox.Block)
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- s.acquire(context.Background()) }()
	select {
	case err := <-got:
		t.Fatalf("acquire on a full Block slots returned %v without waiting", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a release did not wake the waiting sender")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with an ending ctx: %v, want DeadlineExceeded", err)
	}
}

func TestSlotsRejectCounts(t *testing.T) {
	s := newSlots(1, mailbox.Reject)
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.acquire(context.Background()); !errors.Is(err, mailbox.ErrFull) {
			t.Fatalf("acquire on full Reject slots: %v, want ErrFull", err)
		}
	}
	if n := s.refused.Load(); n != 3 {
		t.Fatalf("%d refusals counted, want 3", n)
	}
}

func TestSlotsCloseWakesWaitersAndRefusesLater(t *testing.T) {
	s := newSlots(1, mailbox.Block)
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	const waiters = 8
	got := make(chan error, waiters)
	for range waiters {
		go func() { got <- s.acquire(context.Background()) }()
	}
	time.Sleep(20 * time.Millisecond)
	s.close()
	for range waiters {
		select {
		case err := <-got:
			if !errors.Is(err, mailbox.ErrClosed) {
				t.Fatalf("waiter got %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("close did not wake a waiting sender")
		}
	}
	s.release()
	if err := s.acquire(context.Background()); !errors.Is(err, mailbox.ErrClosed) {
		t.Fatalf("acquire after close: %v, want ErrClosed", err)
	}
	if n := s.len(); n != 0 {
		t.Fatalf("%d slots taken after close, want 0", n)
	}
}

// TestSlotsReleasesInARowWakeAsManyWaiters checks that releases made while
// several senders wait wake as many of them, even when they come faster
// than the waiters run.
func TestSlotsReleasesInARowWakeAsManyWaiters(t *testing.T) {
	const capacity = 8
	for range 200 {
		s := newSlots(capacity, mailbox.Block)
		for range capacity {
			if err := s.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan error, capacity)
		for range capacity {
			go func() { got <- s.acquire(context.Background()) }()
		}
		for s.waiting.Load() < capacity {
			time.Sleep(time.Microsecond)
		}
		for range capacity {
			s.release()
		}
		for range capacity {
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%d releases in a row left a sender waiting", capacity)
			}
		}
	}
}

// TestSlotsWaitersAreNotOvertaken checks that a sender that keeps taking
// and releasing a slot (one connection's receive path, looping) cannot
// overtake a sender that waits: once the waiter is queued, the next
// release is its.
func TestSlotsWaitersAreNotOvertaken(t *testing.T) {
	s := newSlots(1, mailbox.Block)
	var loops atomic.Int64
	stop := make(chan struct{})
	looped := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				looped <- nil
				return
			default:
			}
			if err := s.acquire(context.Background()); err != nil {
				looped <- err
				return
			}
			loops.Add(1)
			s.release()
		}
	}()
	for loops.Load() < 1000 {
		time.Sleep(time.Millisecond)
	}
	for range 20 {
		got := make(chan int64, 1)
		go func() {
			if err := s.acquire(context.Background()); err != nil {
				t.Error(err)
			}
			got <- loops.Load()
			s.release()
		}()
		// Until it queued, or took a slot at once (a round that proves
		// nothing, and passes).
		for s.waiting.Load() == 0 && len(got) == 0 {
			runtime.Gosched()
		}
		queued := loops.Load()
		select {
		case at := <-got:
			// The looping sender may finish the take it held when the
			// waiter queued, and no more.
			if at-queued > 1 {
				t.Fatalf("a waiting sender was overtaken %d times", at-queued)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiting sender never got a slot from a looping one")
		}
	}
	close(stop)
	if err := <-looped; err != nil {
		t.Fatal(err)
	}
}
