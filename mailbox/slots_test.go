package mailbox_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/mailbox"
)

func TestSlotsNeverExceedCapacity(t *testing.T) {
	const capacity, senders, each = 4, 16, 2000
	s := mailbox.NewSlots(capacity, mailbox.Block)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := s.Acquire(context.Background()); err != nil {
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
				s.Release()
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > capacity {
		t.Fatalf("%d slots held at once, capacity %d", p, capacity)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
}

func TestSlotsBlockWaitsForRelease(t *testing.T) {
	s := mailbox.NewSlots(1, mailbox.Block)
	if err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- s.Acquire(context.Background()) }()
	select {
	case err := <-got:
		t.Fatalf("acquire on a full Block slots returned %v without waiting", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.Release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(long):
		t.Fatal("a release did not wake the waiting sender")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with an ending ctx: %v, want DeadlineExceeded", err)
	}
}

func TestSlotsRejectCounts(t *testing.T) {
	s := mailbox.NewSlots(1, mailbox.Reject)
	if err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Acquire(context.Background()); !errors.Is(err, mailbox.ErrFull) {
			t.Fatalf("acquire on full Reject slots: %v, want ErrFull", err)
		}
	}
	if n := s.Refused(); n != 3 {
		t.Fatalf("%d refusals counted, want 3", n)
	}
}

func TestSlotsCloseWakesWaitersAndRefusesLater(t *testing.T) {
	s := mailbox.NewSlots(1, mailbox.Block)
	if err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	const waiters = 8
	got := make(chan error, waiters)
	for range waiters {
		go func() { got <- s.Acquire(context.Background()) }()
	}
	time.Sleep(20 * time.Millisecond)
	s.Close()
	for range waiters {
		select {
		case err := <-got:
			if !errors.Is(err, mailbox.ErrClosed) {
				t.Fatalf("waiter got %v, want ErrClosed", err)
			}
		case <-time.After(long):
			t.Fatal("close did not wake a waiting sender")
		}
	}
	s.Release()
	if err := s.Acquire(context.Background()); !errors.Is(err, mailbox.ErrClosed) {
		t.Fatalf("acquire after close: %v, want ErrClosed", err)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d slots taken after close, want 0", n)
	}
}

// TestSlotsReleasesInARowWakeAsManyWaiters checks that releases made while
// several senders wait wake as many of them, even when they come faster
// than the waiters run.
func TestSlotsReleasesInARowWakeAsManyWaiters(t *testing.T) {
	const capacity = 8
	for range 200 {
		s := mailbox.NewSlots(capacity, mailbox.Block)
		for range capacity {
			if err := s.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan error, capacity)
		for range capacity {
			go func() { got <- s.Acquire(context.Background()) }()
		}
		for s.Waiting() < capacity {
			time.Sleep(time.Microsecond)
		}
		for range capacity {
			s.Release()
		}
		for range capacity {
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(long):
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
	s := mailbox.NewSlots(1, mailbox.Block)
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
			if err := s.Acquire(context.Background()); err != nil {
				looped <- err
				return
			}
			loops.Add(1)
			s.Release()
		}
	}()
	for loops.Load() < 1000 {
		time.Sleep(time.Millisecond)
	}
	for range 20 {
		got := make(chan int64, 1)
		go func() {
			if err := s.Acquire(context.Background()); err != nil {
				t.Error(err)
			}
			got <- loops.Load()
			s.Release()
		}()
		// Until it queued, or took a slot at once (a round that proves
		// nothing, and passes).
		for s.Waiting() == 0 && len(got) == 0 {
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
		case <-time.After(long):
			t.Fatal("a waiting sender never got a slot from a looping one")
		}
	}
	close(stop)
	if err := <-looped; err != nil {
		t.Fatal(err)
	}
}

func TestNewSlots(t *testing.T) {
	tests := []struct {
		name   string
		in     int
		policy mailbox.Policy
		want   int
	}{
		{"negative", -5, mailbox.Block, 1},
		{"zero", 0, mailbox.Reject, 1},
		{"one", 1, mailbox.Block, 1},
		{"many", 64, mailbox.Reject, 64},
		{"beyond any memory", math.MaxInt, mailbox.Block, 1<<62 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mailbox.NewSlots(tt.in, tt.policy)
			if s.Cap() != tt.want || s.Policy() != tt.policy || s.Len() != 0 {
				t.Fatalf("NewSlots(%d, %v): Cap %d, Policy %v, Len %d; want %d, %v, 0",
					tt.in, tt.policy, s.Cap(), s.Policy(), s.Len(), tt.want, tt.policy)
			}
		})
	}
}

func TestNewSlotsUndefinedPolicyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewSlots with an undefined policy did not panic")
		}
	}()
	mailbox.NewSlots(1, mailbox.Policy(7))
}

// TestSlotsTryAcquire checks that TryAcquire never waits and never counts a
// refusal, and that it leaves a free slot to a sender already waiting.
func TestSlotsTryAcquire(t *testing.T) {
	for _, policy := range []mailbox.Policy{mailbox.Block, mailbox.Reject} {
		t.Run(policy.String(), func(t *testing.T) {
			s := mailbox.NewSlots(1, policy)
			if !s.TryAcquire() {
				t.Fatal("TryAcquire on free slots = false")
			}
			if s.TryAcquire() {
				t.Fatal("TryAcquire on full slots = true")
			}
			if n := s.Refused(); n != 0 {
				t.Fatalf("Refused() = %d after TryAcquire, want 0", n)
			}
			s.Release()
			if s.Len() != 0 {
				t.Fatalf("Len() = %d after Release, want 0", s.Len())
			}
			s.Close()
			if !s.Closed() {
				t.Fatal("Closed() = false after Close")
			}
			if s.TryAcquire() {
				t.Fatal("TryAcquire after Close = true")
			}
			if s.Len() != 0 {
				t.Fatalf("Len() = %d after a refused TryAcquire, want 0", s.Len())
			}
		})
	}

	t.Run("waiter first", func(t *testing.T) {
		s := mailbox.NewSlots(1, mailbox.Block)
		if !s.TryAcquire() {
			t.Fatal("TryAcquire on free slots = false")
		}
		got := make(chan error, 1)
		go func() { got <- s.Acquire(context.Background()) }()
		for s.Waiting() == 0 {
			runtime.Gosched()
		}
		// The slot goes to the waiter as it is released: nothing is free
		// for TryAcquire in between.
		s.Release()
		if s.TryAcquire() {
			t.Fatal("TryAcquire while a sender waits = true")
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(long):
			t.Fatal("the waiting sender never got the released slot")
		}
		s.Release()
	})
}

// TestSlotsCloseRacingTakes checks the promise Len makes after Close: every
// take that succeeds is counted by a Len read once Close has returned, so
// an owner that closes and then finds Len zero knows no holder is left.
func TestSlotsCloseRacingTakes(t *testing.T) {
	for range 20 {
		s := mailbox.NewSlots(1<<16, mailbox.Reject)
		const senders = 4
		took := make(chan int, senders)
		for g := range senders {
			go func() {
				n := 0
				for i := 0; ; i++ {
					var err error
					if (g+i)%2 == 0 {
						if !s.TryAcquire() {
							err = s.Acquire(context.Background())
							if err == nil {
								n++
							}
						} else {
							n++
						}
					} else if err = s.Acquire(context.Background()); err == nil {
						n++
					}
					if errors.Is(err, mailbox.ErrClosed) {
						took <- n // slots are never released: all still held
						return
					}
				}
			}()
		}
		for s.Len() < 100 {
			runtime.Gosched()
		}
		s.Close()
		held := s.Len()
		total := 0
		for range senders {
			select {
			case n := <-took:
				total += n
			case <-time.After(long):
				t.Fatal("a sender never saw the slots close")
			}
		}
		if total != held {
			t.Fatalf("Len() = %d right after Close, but %d takes succeeded", held, total)
		}
		if s.TryAcquire() || s.Len() != held {
			t.Fatalf("a take succeeded after Close (Len %d, was %d)", s.Len(), held)
		}
	}
}
