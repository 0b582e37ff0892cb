package actor_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/actor"
)

func TestStopWaitsForRunningMessages(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			started := make(chan int, 2)
			release := make(chan struct{})
			var finished atomic.Int32
			a, err := actor.New(actor.Config[int, int]{
				// Mailbox 1: the probing Tell below waits for room
				// until Stop refuses it, instead of running.
				Mode: m.mode, MaxConcurrency: m.conc, Mailbox: 1,
				Factory: stateless(func(_ context.Context, msg int) {
					select {
					case started <- msg:
					default: // only the first start matters
					}
					<-release
					finished.Add(1)
				}),
			})
			if err != nil {
				t.Fatal(err)
			}
			filled := fill(t, a, m.mode, []int{0}, []int{1})
			recv(t, started, "the message to start")

			stopped := make(chan error, 1)
			go func() { stopped <- a.Stop(context.Background()) }()
			// The actor is full, so this Tell waits for room until Stop
			// refuses it: once it returns, Stop has begun.
			if err := a.Tell(context.Background(), 0, 2); !errors.Is(err, actor.ErrStopped) {
				t.Fatalf("Tell while stopping = %v, want ErrStopped", err)
			}
			if !errors.Is(a.Err(), actor.ErrStopped) {
				t.Fatalf("Err() while stopping = %v, want ErrStopped", a.Err())
			}
			quiet(t, stopped, "Stop returning while a message runs")
			close(release)
			if err := recv(t, stopped, "Stop"); err != nil {
				t.Fatalf("Stop = %v", err)
			}
			if finished.Load() < 1 {
				t.Fatal("Stop returned before the running message finished")
			}
			if m.mode == actor.Inline {
				if err := recv(t, filled, "the filling Tell"); err != nil {
					t.Fatal(err)
				}
			}
			// Idempotent.
			if err := a.Stop(context.Background()); err != nil {
				t.Fatalf("second Stop = %v", err)
			}
		})
	}
}

func TestStopWithExpiredContextDropsQueued(t *testing.T) {
	for _, m := range []struct {
		name string
		mode actor.Mode
		conc int
	}{{"ordered", actor.Ordered, 0}, {"spawn-capped", actor.Spawn, 1}} {
		t.Run(m.name, func(t *testing.T) {
			started := make(chan int, 1)
			release := make(chan struct{})
			var dropped collector[int]
			var dropErrs collector[error]
			a, err := actor.New(actor.Config[int, int]{
				Mode: m.mode, MaxConcurrency: m.conc,
				Factory: blocking(started, release),
				Drop: func(msg int, err error) {
					dropped.add(msg)
					dropErrs.add(err)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				if err := a.Tell(context.Background(), 0, i); err != nil {
					t.Fatal(err)
				}
			}
			recv(t, started, "the first message to start")

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := a.Stop(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Stop with expired ctx = %v, want context.Canceled", err)
			}
			if got := dropped.get(); !slices.Equal(got, []int{1, 2, 3}) {
				t.Fatalf("dropped %v, want [1 2 3]", got)
			}
			for _, err := range dropErrs.get() {
				if !errors.Is(err, actor.ErrStopped) {
					t.Fatalf("Drop error %v, want ErrStopped", err)
				}
			}
			if err := a.Tell(context.Background(), 0, 9); !errors.Is(err, actor.ErrStopped) {
				t.Fatalf("Tell after Stop = %v, want ErrStopped", err)
			}
			// The running message still finishes; a second Stop waits for it.
			close(release)
			stop(t, a)
			if got := dropped.get(); len(got) != 3 {
				t.Fatalf("dropped %v after the final Stop, want 3 messages", got)
			}
		})
	}
}

// TestTellStopRace races Tells against Stop and checks that each accepted
// message has exactly one outcome (run or dropped) and nothing panics.
func TestTellStopRace(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for round := range 20 {
				var ran, dropped atomic.Int64
				a, err := actor.New(actor.Config[int, int]{
					Mode: m.mode, MaxConcurrency: m.conc, Mailbox: 8,
					Factory: stateless(func(context.Context, int) { ran.Add(1) }),
					Drop:    func(int, error) { dropped.Add(1) },
				})
				if err != nil {
					t.Fatal(err)
				}
				const tellers, each = 4, 50
				results := make(chan [2]int64, tellers)
				failures := make(chan error, tellers)
				start := make(chan struct{})
				for g := range tellers {
					go func() {
						<-start
						var ok int64
						for i := range each {
							err := a.Tell(context.Background(), i%3, g)
							switch {
							case err == nil:
								ok++
							case errors.Is(err, actor.ErrStopped):
							default:
								failures <- err
								return
							}
						}
						results <- [2]int64{ok, 0}
					}()
				}
				stopErr := make(chan error, 1)
				go func() {
					<-start
					stopErr <- a.Stop(context.Background())
				}()
				close(start)
				var accepted int64
				for range tellers {
					select {
					case err := <-failures:
						t.Fatalf("round %d: Tell = %v", round, err)
					case r := <-results:
						accepted += r[0]
					case <-time.After(long):
						t.Fatal("tellers did not finish")
					}
				}
				if err := recv(t, stopErr, "Stop"); err != nil {
					t.Fatal(err)
				}
				stop(t, a) // the tellers may have outlived the first Stop's wait
				if got := ran.Load() + dropped.Load(); got != accepted {
					t.Fatalf("round %d: %d accepted, %d ran + %d dropped", round, accepted, ran.Load(), dropped.Load())
				}
			}
		})
	}
}
