package mailbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/mailbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// long bounds waits that only end early when the code under test is broken;
// it is generous so that a loaded machine never trips it.
const long = 10 * time.Second

func TestNewCapacity(t *testing.T) {
	tests := []struct {
		name string
		in   int
		want int
	}{
		{"negative", -5, 1},
		{"zero", 0, 1},
		{"one", 1, 1},
		{"many", 64, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mailbox.New[int](tt.in, mailbox.Block).Cap(); got != tt.want {
				t.Fatalf("Cap() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNewUndefinedPolicyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with an undefined policy did not panic")
		}
	}()
	mailbox.New[int](1, mailbox.Policy(7))
}

func TestPolicyString(t *testing.T) {
	tests := []struct {
		p    mailbox.Policy
		want string
	}{
		{mailbox.Block, "block"},
		{mailbox.Reject, "reject"},
		{mailbox.Policy(9), "Policy(9)"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("Policy(%d).String() = %q, want %q", int(tt.p), got, tt.want)
		}
	}
}

func TestFIFO(t *testing.T) {
	for _, policy := range []mailbox.Policy{mailbox.Block, mailbox.Reject} {
		t.Run(policy.String(), func(t *testing.T) {
			const n = 100
			m := mailbox.New[int](n, policy)
			ctx := context.Background()
			for i := range n {
				if err := m.Push(ctx, i); err != nil {
					t.Fatalf("Push(%d): %v", i, err)
				}
			}
			if m.Len() != n {
				t.Fatalf("Len() = %d, want %d", m.Len(), n)
			}
			for i := range n {
				var (
					v   int
					err error
				)
				if i%2 == 0 {
					v, err = m.Pop(ctx)
				} else {
					var ok bool
					v, ok = m.TryPop()
					if !ok {
						err = errors.New("TryPop found nothing")
					}
				}
				if err != nil || v != i {
					t.Fatalf("pop #%d = %d, %v; want %d, nil", i, v, err, i)
				}
			}
			if v, ok := m.TryPop(); ok {
				t.Fatalf("TryPop on empty mailbox = %d, true", v)
			}
		})
	}
}

func TestBlockWaitsThenProceeds(t *testing.T) {
	m := mailbox.New[int](1, mailbox.Block)
	ctx := context.Background()
	if err := m.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() { pushed <- m.Push(ctx, 2) }()

	// The second push must not complete while the mailbox is full. If it
	// wrongly returns early, this check may or may not catch it, but it can
	// never fail a correct implementation.
	select {
	case err := <-pushed:
		t.Fatalf("Push on a full Block mailbox returned %v without waiting", err)
	case <-time.After(20 * time.Millisecond):
	}
	if v, err := m.Pop(ctx); err != nil || v != 1 {
		t.Fatalf("Pop = %d, %v; want 1, nil", v, err)
	}
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatalf("waiting Push returned %v after room was made", err)
		}
	case <-time.After(long):
		t.Fatal("waiting Push did not proceed after Pop")
	}
	if v, err := m.Pop(ctx); err != nil || v != 2 {
		t.Fatalf("Pop = %d, %v; want 2, nil", v, err)
	}
}

func TestBlockHonoursContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mailbox.New[int](1, mailbox.Block)
			if err := m.Push(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			if err := m.Push(ctx, 2); !errors.Is(err, tt.want) {
				t.Fatalf("Push on full mailbox = %v, want %v", err, tt.want)
			}
			if _, err := m.Pop(ctx); err != nil {
				t.Fatalf("Pop with item ready = %v, want nil", err)
			}
			if _, err := m.Pop(ctx); !errors.Is(err, tt.want) {
				t.Fatalf("Pop on empty mailbox = %v, want %v", err, tt.want)
			}
			if m.Refused() != 0 {
				t.Fatalf("Refused() = %d after ctx errors, want 0", m.Refused())
			}
		})
	}
}

func TestRejectReturnsErrFullAndCounts(t *testing.T) {
	tests := []struct {
		name   string
		policy mailbox.Policy
		push   func(m *mailbox.Mailbox[int], v int) error
	}{
		{"Push/reject", mailbox.Reject, func(m *mailbox.Mailbox[int], v int) error { return m.Push(context.Background(), v) }},
		{"TryPush/reject", mailbox.Reject, func(m *mailbox.Mailbox[int], v int) error { return m.TryPush(v) }},
		{"TryPush/block", mailbox.Block, func(m *mailbox.Mailbox[int], v int) error { return m.TryPush(v) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mailbox.New[int](2, tt.policy)
			for i := range 2 {
				if err := tt.push(m, i); err != nil {
					t.Fatalf("push %d: %v", i, err)
				}
			}
			for i := range 3 {
				if err := tt.push(m, 9); !errors.Is(err, mailbox.ErrFull) {
					t.Fatalf("push into full mailbox = %v, want ErrFull", err)
				}
				if got := m.Refused(); got != uint64(i+1) {
					t.Fatalf("Refused() = %d, want %d", got, i+1)
				}
			}
			if m.Len() != 2 {
				t.Fatalf("Len() = %d, want 2", m.Len())
			}
		})
	}
}

func TestCloseWakesPushersAndDrains(t *testing.T) {
	m := mailbox.New[int](2, mailbox.Block)
	ctx := context.Background()
	for i := range 2 {
		if err := m.Push(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	const waiters = 4
	errs := make(chan error, waiters)
	for range waiters {
		go func() { errs <- m.Push(ctx, 99) }()
	}
	m.Close()
	m.Close() // idempotent
	for range waiters {
		select {
		case err := <-errs:
			if !errors.Is(err, mailbox.ErrClosed) {
				t.Fatalf("blocked Push after Close = %v, want ErrClosed", err)
			}
		case <-time.After(long):
			t.Fatal("Close did not wake a blocked Push")
		}
	}
	if err := m.Push(ctx, 5); !errors.Is(err, mailbox.ErrClosed) {
		t.Fatalf("Push after Close = %v, want ErrClosed", err)
	}
	if err := m.TryPush(5); !errors.Is(err, mailbox.ErrClosed) {
		t.Fatalf("TryPush after Close = %v, want ErrClosed", err)
	}
	for i := range 2 {
		if v, err := m.Pop(ctx); err != nil || v != i {
			t.Fatalf("Pop after Close = %d, %v; want %d, nil", v, err, i)
		}
	}
	if _, err := m.Pop(ctx); !errors.Is(err, mailbox.ErrClosed) {
		t.Fatalf("Pop on drained closed mailbox = %v, want ErrClosed", err)
	}
	if _, ok := m.TryPop(); ok {
		t.Fatal("TryPop on drained closed mailbox reported a value")
	}
}

func TestCloseWakesPopper(t *testing.T) {
	m := mailbox.New[int](1, mailbox.Block)
	got := make(chan error, 1)
	go func() {
		_, err := m.Pop(context.Background())
		got <- err
	}()
	m.Close()
	select {
	case err := <-got:
		if !errors.Is(err, mailbox.ErrClosed) {
			t.Fatalf("Pop woken by Close = %v, want ErrClosed", err)
		}
	case <-time.After(long):
		t.Fatal("Close did not wake a waiting Pop")
	}
}

// TestConcurrentPushClose races many pushers against Close and checks that
// nothing panics and that every push either enqueued (and is popped after
// Close) or got ErrClosed.
func TestConcurrentPushClose(t *testing.T) {
	for _, policy := range []mailbox.Policy{mailbox.Block, mailbox.Reject} {
		t.Run(policy.String(), func(t *testing.T) {
			for round := range 50 {
				const pushers, each = 8, 50
				m := mailbox.New[int](pushers*each, policy)
				var ok, closed sync.WaitGroup
				accepted := make(chan int, pushers*each)
				failures := make(chan error, pushers)
				start := make(chan struct{})
				for p := range pushers {
					ok.Add(1)
					go func() {
						defer ok.Done()
						<-start
						for i := range each {
							err := m.Push(context.Background(), p*each+i)
							switch {
							case err == nil:
								accepted <- p*each + i
							case errors.Is(err, mailbox.ErrClosed):
							default:
								failures <- err
								return
							}
						}
					}()
				}
				closed.Add(1)
				go func() {
					defer closed.Done()
					<-start
					m.Close()
				}()
				close(start)
				ok.Wait()
				closed.Wait()
				close(accepted)
				close(failures)
				for err := range failures {
					t.Fatalf("round %d: Push = %v, want nil or ErrClosed", round, err)
				}
				want := map[int]bool{}
				for v := range accepted {
					want[v] = true
				}
				for {
					v, err := m.Pop(context.Background())
					if errors.Is(err, mailbox.ErrClosed) {
						break
					}
					if err != nil {
						t.Fatalf("round %d: Pop = %v", round, err)
					}
					if !want[v] {
						t.Fatalf("round %d: popped %d, which no Push reported as accepted", round, v)
					}
					delete(want, v)
				}
				if len(want) != 0 {
					t.Fatalf("round %d: %d accepted values were lost", round, len(want))
				}
			}
		})
	}
}

// TestConcurrentProducers checks that values from many producers all arrive,
// each producer's values in its own order.
func TestConcurrentProducers(t *testing.T) {
	const producers, each = 4, 2000
	m := mailbox.New[[2]int](16, mailbox.Block)
	ctx := context.Background()
	errs := make(chan error, producers)
	for p := range producers {
		go func() {
			for i := range each {
				if err := m.Push(ctx, [2]int{p, i}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	next := make([]int, producers)
	for range producers * each {
		v, err := m.Pop(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v[1] != next[v[0]] {
			t.Fatalf("producer %d: got %d, want %d", v[0], v[1], next[v[0]])
		}
		next[v[0]]++
	}
	for range producers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkMailboxPushPop(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		m := mailbox.New[int](1024, mailbox.Block)
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := m.Push(ctx, i); err != nil {
				b.Fatal(err)
			}
			if _, err := m.Pop(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("producer-consumer", func(b *testing.B) {
		m := mailbox.New[int](1024, mailbox.Block)
		ctx := context.Background()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, err := m.Pop(ctx); err != nil {
					return
				}
			}
		}()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := m.Push(ctx, i); err != nil {
				b.Fatal(err)
			}
		}
		m.Close()
		<-done
	})
}
