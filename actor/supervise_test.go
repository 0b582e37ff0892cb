package actor_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/actor"
)

func TestRestartPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    actor.RestartPolicy
		ok   bool
	}{
		{"zero", actor.RestartPolicy{}, true},
		{"default", actor.DefaultRestartPolicy(), true},
		{"full", actor.RestartPolicy{MaxRestarts: 3, Window: time.Minute, Backoff: time.Second, MaxBackoff: time.Minute}, true},
		{"backoff above default cap", actor.RestartPolicy{Backoff: time.Hour}, true},
		{"negative window", actor.RestartPolicy{Window: -1}, false},
		{"negative backoff", actor.RestartPolicy{Backoff: -1}, false},
		{"negative max backoff", actor.RestartPolicy{MaxBackoff: -1}, false},
		{"max below backoff", actor.RestartPolicy{Backoff: time.Second, MaxBackoff: time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if p := actor.DefaultRestartPolicy(); p.MaxRestarts >= 0 || p.Backoff != 0 {
		t.Fatalf("DefaultRestartPolicy() = %+v, want unlimited restarts without backoff", p)
	}
}

func TestPanicBecomesPanicError(t *testing.T) {
	sentinel := errors.New("sentinel")
	tests := []struct {
		name  string
		value any
		is    error
	}{
		{"string", "boom", nil},
		{"error", sentinel, sentinel},
	}
	for _, m := range modes {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				type report struct {
					msg int
					err *actor.PanicError
				}
				reports := make(chan report, 1)
				a := mustNew(t, actor.Config[int, int]{
					Mode: m.mode, MaxConcurrency: m.conc,
					Restart: actor.DefaultRestartPolicy(),
					Factory: stateless(func(context.Context, int) { explode(tt.value) }),
					OnPanic: func(msg int, err *actor.PanicError) { reports <- report{msg, err} },
				})
				if err := a.Tell(context.Background(), 0, 7); err != nil {
					t.Fatal(err)
				}
				r := recv(t, reports, "OnPanic")
				if r.msg != 7 || r.err == nil || r.err.Value != tt.value {
					t.Fatalf("OnPanic(%d, %#v), want message 7 and value %v", r.msg, r.err, tt.value)
				}
				if want := fmt.Sprintf("panic: %v", tt.value); r.err.Error() != want {
					t.Fatalf("Error() = %q, want %q", r.err.Error(), want)
				}
				if !strings.Contains(string(r.err.Stack), "actor_test.explode") {
					t.Fatalf("Stack does not show the panicking function:\n%s", r.err.Stack)
				}
				if tt.is != nil && !errors.Is(r.err, tt.is) {
					t.Fatalf("errors.Is(PanicError, %v) = false", tt.is)
				}
			})
		}
	}
}

//go:noinline
func explode(v any) { panic(v) }

func TestDefaultPolicyKeepsActorAlive(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const panics = 100
			var ok, failed atomic.Int32
			a := mustNew(t, actor.Config[int, bool]{
				Mode: m.mode, MaxConcurrency: m.conc,
				Restart: actor.DefaultRestartPolicy(),
				Factory: stateless(func(_ context.Context, boom bool) {
					if boom {
						panic("boom")
					}
					ok.Add(1)
				}),
				OnPanic: func(bool, *actor.PanicError) { failed.Add(1) },
			})
			for i := range panics {
				// One key: in Ordered mode the panics come one at a time.
				if err := a.Tell(context.Background(), 0, true); err != nil {
					t.Fatalf("Tell after %d panics: %v", i, err)
				}
			}
			if err := a.Tell(context.Background(), 0, false); err != nil {
				t.Fatal(err)
			}
			stop(t, a)
			if failed.Load() != panics || ok.Load() != 1 {
				t.Fatalf("%d panics reported and %d messages ran, want %d and 1", failed.Load(), ok.Load(), panics)
			}
			if a.Restarts() < 1 {
				t.Fatalf("Restarts() = %d, want at least 1", a.Restarts())
			}
			if m.mode != actor.Spawn {
				// One message at a time: every panic is its own restart.
				if a.Restarts() != panics {
					t.Fatalf("Restarts() = %d, want %d", a.Restarts(), panics)
				}
			}
		})
	}
}

// TestMaxRestartsStops: with MaxRestarts 2, the third panic stops the
// actor; what was queued goes to Drop, and Tell then fails with ErrStopped.
func TestMaxRestartsStops(t *testing.T) {
	for _, m := range []struct {
		name string
		mode actor.Mode
		conc int
	}{{"ordered", actor.Ordered, 0}, {"spawn-capped", actor.Spawn, 1}} {
		t.Run(m.name, func(t *testing.T) {
			gate := make(chan struct{})
			type drop struct {
				msg string
				err error
			}
			drops := make(chan drop, 10)
			var panics atomic.Int32
			a := mustNew(t, actor.Config[int, string]{
				Name: "fragile", Mode: m.mode, MaxConcurrency: m.conc, Mailbox: 16,
				Restart: actor.RestartPolicy{MaxRestarts: 2},
				Factory: stateless(func(_ context.Context, msg string) {
					switch msg {
					case "gate":
						<-gate
					case "boom":
						panic("boom")
					}
				}),
				OnPanic: func(string, *actor.PanicError) { panics.Add(1) },
				Drop:    func(msg string, err error) { drops <- drop{msg, err} },
			})
			// One at a time (one key, or one worker): the gate holds the
			// line until everything is queued.
			msgs := []string{"gate", "boom", "boom", "boom", "ok1", "ok2", "ok3"}
			for _, msg := range msgs {
				if err := a.Tell(context.Background(), 0, msg); err != nil {
					t.Fatal(err)
				}
			}
			close(gate)
			for _, want := range msgs[4:] {
				d := recv(t, drops, "a dropped message")
				if d.msg != want || !errors.Is(d.err, actor.ErrStopped) {
					t.Fatalf("Drop(%q, %v), want %q with ErrStopped", d.msg, d.err, want)
				}
			}
			stop(t, a)
			if n := panics.Load(); n != 3 {
				t.Fatalf("%d panics reported, want 3", n)
			}
			if a.Restarts() != 2 {
				t.Fatalf("Restarts() = %d, want 2", a.Restarts())
			}
			err := a.Err()
			if !errors.Is(err, actor.ErrStopped) || !strings.Contains(err.Error(), `"fragile" after 2 restarts: last panic: boom`) {
				t.Fatalf("Err() = %v, want ErrStopped naming the actor, restarts and panic", err)
			}
			if err := a.Tell(context.Background(), 0, "late"); !errors.Is(err, actor.ErrStopped) {
				t.Fatalf("Tell after the supervisor stopped = %v, want ErrStopped", err)
			}
		})
	}
}

func TestZeroRestartPolicyStopsAtFirstPanic(t *testing.T) {
	a := mustNew(t, actor.Config[int, int]{
		Mode:    actor.Inline,
		Factory: stateless(func(context.Context, int) { panic("first") }),
	})
	if err := a.Tell(context.Background(), 0, 0); err != nil {
		t.Fatalf("Tell = %v; the panic is the handler's outcome, not Tell's", err)
	}
	if err := a.Tell(context.Background(), 0, 0); !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("Tell after first panic = %v, want ErrStopped", err)
	}
	if a.Restarts() != 0 {
		t.Fatalf("Restarts() = %d, want 0", a.Restarts())
	}
}

func TestWindowForgetsOldRestarts(t *testing.T) {
	// One restart allowed per Window. Panics spaced by more than Window
	// keep the actor alive; this only needs time to pass, so it cannot
	// fail on a slow machine.
	const window = 30 * time.Millisecond
	a := mustNew(t, actor.Config[int, int]{
		Mode:    actor.Inline,
		Restart: actor.RestartPolicy{MaxRestarts: 1, Window: window},
		Factory: stateless(func(context.Context, int) { panic("boom") }),
	})
	for i := range 3 {
		if err := a.Tell(context.Background(), 0, 0); err != nil {
			t.Fatalf("Tell %d: %v", i, err)
		}
		time.Sleep(window + 5*time.Millisecond)
	}
	if err := a.Err(); err != nil {
		t.Fatalf("actor stopped although its restarts were spread out: %v", err)
	}
	// Two panics within the window: the second stops the actor.
	_ = a.Tell(context.Background(), 0, 0)
	_ = a.Tell(context.Background(), 0, 0)
	if err := a.Err(); !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("Err() after two quick panics = %v, want ErrStopped", err)
	}
}

func TestFactoryRecreatesState(t *testing.T) {
	var builds atomic.Int32
	counts := make(chan int, 10)
	a := mustNew(t, actor.Config[int, string]{
		Mode:    actor.Inline,
		Restart: actor.DefaultRestartPolicy(),
		Factory: func() func(context.Context, string) {
			builds.Add(1)
			n := 0 // the handler's state
			return func(_ context.Context, msg string) {
				if msg == "boom" {
					panic("boom")
				}
				n++
				counts <- n
			}
		},
	})
	var got []int
	for _, msg := range []string{"inc", "inc", "boom", "inc", "inc", "inc"} {
		if err := a.Tell(context.Background(), 0, msg); err != nil {
			t.Fatal(err)
		}
		if msg == "inc" {
			got = append(got, <-counts)
		}
	}
	if want := []int{1, 2, 1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("counter values %v, want %v (state reset by the restart)", got, want)
	}
	if builds.Load() != 2 {
		t.Fatalf("Factory called %d times, want 2", builds.Load())
	}
}

func TestBackoffDelaysRestartWithoutLosingMessages(t *testing.T) {
	const backoff = 100 * time.Millisecond
	var (
		builds     atomic.Int32
		panicked   = make(chan time.Time, 1)
		rebuilding = make(chan time.Time, 1)
		rebuild    = make(chan struct{})
		ran        = make(chan int32, 10)
	)
	a := mustNew(t, actor.Config[int, int]{
		Mode:    actor.Spawn,
		Restart: actor.RestartPolicy{MaxRestarts: -1, Backoff: backoff},
		Factory: func() func(context.Context, int) {
			gen := builds.Add(1)
			if gen == 2 {
				rebuilding <- time.Now()
				<-rebuild // hold the restart open while messages arrive
			}
			return func(_ context.Context, msg int) {
				if msg < 0 {
					panic("boom")
				}
				ran <- gen
			}
		},
		OnPanic: func(int, *actor.PanicError) { panicked <- time.Now() },
	})
	t0 := time.Now() // before the panic, so before the backoff's timer starts
	if err := a.Tell(context.Background(), 0, -1); err != nil {
		t.Fatal(err)
	}
	recv(t, panicked, "OnPanic")
	const n = 5
	for i := range n {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatalf("Tell during backoff: %v", err)
		}
	}
	t1 := recv(t, rebuilding, "the restart")
	// Timers never fire early, so this lower bound cannot flake. (Timed
	// from OnPanic, which runs after the timer is armed, it did: 97 ms on
	// a loaded machine.)
	if d := t1.Sub(t0); d < backoff {
		t.Fatalf("restart came %v after the panic, want at least %v", d, backoff)
	}
	quiet(t, ran, "a message running before the restart finished")
	close(rebuild)
	for range n {
		if gen := recv(t, ran, "a message told during backoff"); gen != 2 {
			t.Fatalf("message ran on handler %d, want the restarted one (2)", gen)
		}
	}
	if a.Restarts() != 1 {
		t.Fatalf("Restarts() = %d, want 1", a.Restarts())
	}
}

func TestStopDuringBackoffDoesNotWait(t *testing.T) {
	a, err := actor.New(actor.Config[int, int]{
		Mode:    actor.Inline,
		Restart: actor.RestartPolicy{MaxRestarts: -1, Backoff: time.Hour},
		Factory: stateless(func(context.Context, int) { panic("boom") }),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Tell(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	// An Inline Tell during the backoff waits for the restart, until its
	// ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), brief)
	defer cancel()
	if err := a.Tell(ctx, 0, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Tell during backoff = %v, want context.DeadlineExceeded", err)
	}
	// Nothing is waiting for the restart, so Stop need not wait an hour.
	stop(t, a)
}

func TestFactoryPanicOnRestartStops(t *testing.T) {
	var builds atomic.Int32
	a := mustNew(t, actor.Config[int, int]{
		Name:    "brittle",
		Mode:    actor.Inline,
		Restart: actor.DefaultRestartPolicy(),
		Factory: func() func(context.Context, int) {
			if builds.Add(1) > 1 {
				panic("cannot rebuild")
			}
			return func(context.Context, int) { panic("boom") }
		},
	})
	if err := a.Tell(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	err := a.Tell(context.Background(), 0, 0)
	if !errors.Is(err, actor.ErrStopped) || !strings.Contains(err.Error(), "cannot rebuild") {
		t.Fatalf("Tell after a failed restart = %v, want ErrStopped with the factory's panic", err)
	}
}

func TestCallbackPanicsAreContained(t *testing.T) {
	dropped := make(chan struct{}, 1)
	a, err := actor.New(actor.Config[int, string]{
		Mode:    actor.Ordered,
		Restart: actor.RestartPolicy{MaxRestarts: 1},
		Factory: stateless(func(_ context.Context, msg string) {
			if msg == "boom" {
				panic("boom")
			}
		}),
		OnPanic: func(string, *actor.PanicError) { panic("OnPanic fails too") },
		Drop: func(string, error) {
			dropped <- struct{}{}
			panic("Drop fails too")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"boom", "ok", "boom", "queued"} {
		if err := a.Tell(context.Background(), 0, msg); err != nil && !errors.Is(err, actor.ErrStopped) {
			t.Fatal(err)
		}
	}
	stop(t, a)
	if !errors.Is(a.Err(), actor.ErrStopped) {
		t.Fatalf("Err() = %v, want ErrStopped", a.Err())
	}
	// "queued" may have been dropped, or refused if the second panic came
	// before its Tell; either way the process is still here.
	select {
	case <-dropped:
	default:
	}
}

func TestGoexitCountsAsFailure(t *testing.T) {
	for _, m := range []struct {
		name string
		mode actor.Mode
		conc int
	}{{"spawn", actor.Spawn, 0}, {"spawn-capped", actor.Spawn, 1}, {"ordered", actor.Ordered, 0}} {
		t.Run(m.name, func(t *testing.T) {
			reports := make(chan any, 1)
			ran := make(chan string, 1)
			a := mustNew(t, actor.Config[int, string]{
				Mode: m.mode, MaxConcurrency: m.conc,
				Restart: actor.DefaultRestartPolicy(),
				Factory: stateless(func(_ context.Context, msg string) {
					if msg == "exit" {
						runtime.Goexit()
					}
					ran <- msg
				}),
				OnPanic: func(_ string, err *actor.PanicError) { reports <- err.Value },
			})
			for _, msg := range []string{"exit", "after"} {
				if err := a.Tell(context.Background(), 0, msg); err != nil {
					t.Fatal(err)
				}
			}
			if v := recv(t, reports, "OnPanic"); !strings.Contains(fmt.Sprint(v), "Goexit") {
				t.Fatalf("OnPanic value = %v, want a Goexit report", v)
			}
			if msg := recv(t, ran, "the next message"); msg != "after" {
				t.Fatalf("ran %q, want %q", msg, "after")
			}
		})
	}
}

func TestConcurrentPanicsInSpawnCountOnce(t *testing.T) {
	// Several messages of one handler panic at once: the handler is
	// replaced once, not once per message.
	const n = 8
	var arrived atomic.Int32
	all := make(chan struct{})
	var reports atomic.Int32
	a := mustNew(t, actor.Config[int, int]{
		Mode:    actor.Spawn,
		Restart: actor.RestartPolicy{MaxRestarts: 1},
		Factory: stateless(func(context.Context, int) {
			if arrived.Add(1) == n {
				close(all)
			}
			<-all
			panic("together")
		}),
		OnPanic: func(int, *actor.PanicError) { reports.Add(1) },
	})
	for i := range n {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatal(err)
		}
	}
	stop(t, a)
	if reports.Load() != n {
		t.Fatalf("OnPanic called %d times, want %d", reports.Load(), n)
	}
	if a.Restarts() != 1 {
		t.Fatalf("Restarts() = %d, want 1", a.Restarts())
	}
}
