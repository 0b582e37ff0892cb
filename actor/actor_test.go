package actor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/actor"
	"github.com/velo-messenger/velo/mailbox"
)

func TestModeString(t *testing.T) {
	tests := []struct {
		m    actor.Mode
		want string
	}{
		{actor.Spawn, "spawn"},
		{actor.Inline, "inline"},
		{actor.Ordered, "ordered"},
		{actor.Mode(42), "Mode(42)"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(tt.m), got, tt.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	ok := stateless(func(context.Context, int) {})
	tests := []struct {
		name string
		cfg  actor.Config[string, int]
		want string // substring of the error
	}{
		{"nil factory", actor.Config[string, int]{}, "nil Factory"},
		{"bad mode", actor.Config[string, int]{Factory: ok, Mode: 9}, "Mode(9)"},
		{"negative mailbox", actor.Config[string, int]{Factory: ok, Mailbox: -1}, "negative Mailbox"},
		{"bad overflow", actor.Config[string, int]{Factory: ok, Overflow: 5}, "overflow"},
		{"negative concurrency", actor.Config[string, int]{Factory: ok, MaxConcurrency: -1}, "negative MaxConcurrency"},
		{"concurrency not spawn", actor.Config[string, int]{Factory: ok, Mode: actor.Ordered, MaxConcurrency: 2}, "Spawn only"},
		{"bad restart", actor.Config[string, int]{Factory: ok, Restart: actor.RestartPolicy{Backoff: -1}}, "negative Backoff"},
		{"factory panics", actor.Config[string, int]{Factory: func() func(context.Context, int) { panic("no") }}, "factory panic: no"},
		{"factory nil handler", actor.Config[string, int]{Factory: func() func(context.Context, int) { return nil }}, "nil handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Name = "h"
			a, err := actor.New(tt.cfg)
			if err == nil || a != nil {
				t.Fatalf("New = %v, %v; want an error", a, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"h"`) {
				t.Fatalf("New error %q does not mention %q and the actor name", err, tt.want)
			}
		})
	}
}

// TestIdleStartsNoGoroutine checks that building an actor, and letting it
// go idle after work, leaves no goroutine running (Spawn workers linger
// for about a second in case more work comes).
func TestIdleStartsNoGoroutine(t *testing.T) {
	for _, mode := range []actor.Mode{actor.Spawn, actor.Inline, actor.Ordered} {
		t.Run(mode.String(), func(t *testing.T) {
			defer func(opt goleak.Option) {
				deadline := time.Now().Add(10 * time.Second)
				for {
					err := goleak.Find(opt)
					if err == nil {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("goroutines left after the actor went idle: %v", err)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}(goleak.IgnoreCurrent())
			var factoryCalls atomic.Int32
			a, err := actor.New(actor.Config[int, int]{
				Mode: mode,
				Factory: func() func(context.Context, int) {
					factoryCalls.Add(1)
					return func(context.Context, int) {}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if n := factoryCalls.Load(); n != 1 {
				t.Fatalf("New called Factory %d times, want 1", n)
			}
			if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
				t.Fatalf("New started a goroutine: %v", err)
			}
			for i := range 100 {
				if err := a.Tell(context.Background(), i, i); err != nil {
					t.Fatal(err)
				}
			}
			// Without Stop: idle drainers must exit by themselves.
		})
	}
}

func TestEachModeRunsMessages(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const n = 500
			var seen [n]atomic.Int32
			a := mustNew(t, actor.Config[int, int]{
				Name: m.name, Mode: m.mode, MaxConcurrency: m.conc, Mailbox: 16,
				Restart: actor.DefaultRestartPolicy(),
				Factory: stateless(func(_ context.Context, msg int) { seen[msg].Add(1) }),
			})
			for i := range n {
				if err := a.Tell(context.Background(), i%7, i); err != nil {
					t.Fatalf("Tell(%d): %v", i, err)
				}
			}
			stop(t, a)
			for i := range n {
				if got := seen[i].Load(); got != 1 {
					t.Fatalf("message %d ran %d times, want 1", i, got)
				}
			}
		})
	}
}

func TestHandlerGetsTellContext(t *testing.T) {
	type ctxKey struct{}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan any, 1)
			a := mustNew(t, actor.Config[int, int]{
				Mode: m.mode, MaxConcurrency: m.conc,
				Factory: stateless(func(ctx context.Context, _ int) { got <- ctx.Value(ctxKey{}) }),
			})
			ctx := context.WithValue(context.Background(), ctxKey{}, "caller")
			if err := a.Tell(ctx, 0, 0); err != nil {
				t.Fatal(err)
			}
			if v := recv(t, got, "handler"); v != "caller" {
				t.Fatalf("handler ctx value = %v, want the one Tell passed", v)
			}
		})
	}
}

func TestBlockBackpressure(t *testing.T) {
	tests := []struct {
		name    string
		mode    actor.Mode
		conc    int
		keys    []int // keys of the two messages that fill the mailbox
		running int   // how many of them run (the rest wait in a queue)
	}{
		{"spawn", actor.Spawn, 0, []int{0, 0}, 2},
		{"spawn-capped", actor.Spawn, 1, []int{0, 0}, 1},
		{"inline", actor.Inline, 0, []int{0, 0}, 2},
		{"ordered-one-key", actor.Ordered, 0, []int{1, 1}, 1},
		{"ordered-two-keys", actor.Ordered, 0, []int{1, 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := make(chan int, 4)
			release := make(chan struct{})
			a := mustNew(t, actor.Config[int, int]{
				Mode: tt.mode, MaxConcurrency: tt.conc, Mailbox: 2, Overflow: mailbox.Block,
				Factory: blocking(started, release),
			})
			filled := fill(t, a, tt.mode, tt.keys, []int{1, 2})
			for range tt.running {
				recv(t, started, "a filling message to start")
			}

			// Full: a Tell whose ctx ends while it waits returns ctx.Err().
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := a.Tell(ctx, 3, 3); !errors.Is(err, context.Canceled) {
				t.Fatalf("Tell with canceled ctx on full actor = %v, want context.Canceled", err)
			}
			// Full: a Tell waits, then proceeds once room is made.
			told := make(chan error, 1)
			go func() { told <- a.Tell(context.Background(), 4, 4) }()
			quiet(t, told, "Tell on a full Block actor returning")

			close(release)
			if err := recv(t, told, "the waiting Tell"); err != nil {
				t.Fatalf("waiting Tell = %v, want nil", err)
			}
			if tt.mode == actor.Inline {
				for range 2 {
					if err := recv(t, filled, "filling Tell"); err != nil {
						t.Fatal(err)
					}
				}
			}
			stop(t, a)
			if n := a.Refused(); n != 0 {
				t.Fatalf("Refused() = %d under Block, want 0", n)
			}
		})
	}
}

func TestRejectWhenFull(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			started := make(chan int, 2)
			release := make(chan struct{})
			a := mustNew(t, actor.Config[int, int]{
				Name: "busy", Mode: m.mode, MaxConcurrency: m.conc, Mailbox: 1, Overflow: mailbox.Reject,
				Factory: blocking(started, release),
			})
			filled := fill(t, a, m.mode, []int{0}, []int{1})
			recv(t, started, "the filling message to start")
			for i := range 3 {
				err := a.Tell(context.Background(), 0, 2)
				if !errors.Is(err, mailbox.ErrFull) || !strings.Contains(err.Error(), `"busy"`) {
					t.Fatalf("Tell on full Reject actor = %v, want ErrFull naming the actor", err)
				}
				if n := a.Refused(); n != uint64(i+1) {
					t.Fatalf("Refused() = %d, want %d", n, i+1)
				}
			}
			close(release)
			if m.mode == actor.Inline {
				if err := recv(t, filled, "filling Tell"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestWaitReportsABlockedTell checks Config.Wait: a Tell that finds room
// does not call it; one that waits for room calls it with true before the
// wait and false after.
func TestWaitReportsABlockedTell(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var calls []string
	a := mustNew(t, actor.Config[int, int]{
		Mode:    actor.Spawn,
		Mailbox: 1,
		Factory: stateless(func(context.Context, int) { <-gate }),
		Wait: func(msg int, waiting bool) {
			mu.Lock()
			calls = append(calls, fmt.Sprint(msg, waiting))
			mu.Unlock()
		},
	})
	if err := a.Tell(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	told := make(chan error, 1)
	go func() { told <- a.Tell(context.Background(), 0, 2) }()
	deadline := time.Now().Add(long)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Wait not called for a Tell that waits for room")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	if err := recv(t, told, "Tell"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"2 true", "2 false"}; !slices.Equal(calls, want) {
		t.Fatalf("Wait calls %q, want %q", calls, want)
	}
}
