package actor_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
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

// modes lists the dispatch configurations that every general test runs in.
var modes = []struct {
	name string
	mode actor.Mode
	conc int
}{
	{"spawn", actor.Spawn, 0},
	{"spawn-capped", actor.Spawn, 2},
	{"inline", actor.Inline, 0},
	{"ordered", actor.Ordered, 0},
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

func TestInlineRunsOnCallingGoroutine(t *testing.T) {
	var stack string
	a := mustNew(t, actor.Config[int, int]{
		Mode: actor.Inline,
		Factory: stateless(func(context.Context, int) {
			stack = string(debug.Stack())
		}),
	})
	if err := a.Tell(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	// On the calling goroutine, the handler's stack runs through this test
	// function; on any other goroutine it would not.
	if !strings.Contains(stack, "TestInlineRunsOnCallingGoroutine") {
		t.Fatalf("Inline handler did not run on the caller's goroutine; its stack:\n%s", stack)
	}
}

func TestSpawnRunsConcurrently(t *testing.T) {
	const n = 16
	var arrived atomic.Int32
	all := make(chan struct{})
	errs := make(chan error, n)
	a := mustNew(t, actor.Config[int, int]{
		Mode: actor.Spawn,
		Factory: stateless(func(context.Context, int) {
			if arrived.Add(1) == n {
				close(all)
			}
			// Every message waits here until all n are running at once.
			select {
			case <-all:
				errs <- nil
			case <-time.After(long):
				errs <- errors.New("not all messages ran at once")
			}
		}),
	})
	for i := range n {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if err := recv(t, errs, "handler"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpawnBlockedHandlerHoldsNoOtherMessage checks that a message whose
// handler blocks never keeps queued messages waiting, including those told
// right behind it while one worker was running quick ones back to back.
func TestSpawnBlockedHandlerHoldsNoOtherMessage(t *testing.T) {
	const quick = 2000
	gate := make(chan struct{})
	var done atomic.Int32
	all := make(chan struct{})
	a := mustNew(t, actor.Config[int, int]{
		Mode:    actor.Spawn,
		Mailbox: 2 * quick,
		Factory: stateless(func(_ context.Context, i int) {
			if i%500 == 0 {
				<-gate // a few messages block until the end
				return
			}
			if done.Add(1) == quick-quick/500 {
				close(all)
			}
		}),
	})
	defer close(gate)
	for i := range quick {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(long):
		t.Fatalf("%d of %d quick messages ran while %d others blocked", done.Load(), quick-quick/500, quick/500)
	}
}

func TestSpawnRespectsMaxConcurrency(t *testing.T) {
	const limit, n = 3, 30
	var running, peak atomic.Int32
	started := make(chan int, n)
	release := make(chan struct{})
	a := mustNew(t, actor.Config[int, int]{
		Mode: actor.Spawn, MaxConcurrency: limit, Mailbox: n,
		Factory: stateless(func(_ context.Context, msg int) {
			r := running.Add(1)
			for {
				p := peak.Load()
				if r <= p || peak.CompareAndSwap(p, r) {
					break
				}
			}
			started <- msg
			<-release
			running.Add(-1)
		}),
	})
	for i := range n {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatal(err)
		}
	}
	for range limit {
		recv(t, started, "a message to start")
	}
	quiet(t, started, "a message beyond MaxConcurrency starting")
	close(release)
	for range n - limit {
		recv(t, started, "a message to start")
	}
	stop(t, a)
	if p := peak.Load(); p != limit {
		t.Fatalf("peak concurrency = %d, want %d", p, limit)
	}
}

func TestOrderedKeepsPerKeyOrder(t *testing.T) {
	const keys, each, relays = 8, 1000, 4
	type msg struct{ key, seq int }
	var (
		got     [keys][]int // got[k] is touched only by k's drainer
		running [keys]atomic.Int32
		overlap atomic.Int32
	)
	a := mustNew(t, actor.Config[int, msg]{
		Mode: actor.Ordered, Mailbox: 64,
		Factory: stateless(func(_ context.Context, m msg) {
			if running[m.key].Add(1) != 1 {
				overlap.Add(1)
			}
			got[m.key] = append(got[m.key], m.seq)
			running[m.key].Add(-1)
		}),
	})
	// For each key, the Tells come from several goroutines in turn: relay
	// j tells seq j, j+relays, ... and passes a token to relay j+1, so the
	// Tells are ordered by happens-before but not by goroutine.
	errs := make(chan error, keys*relays)
	for k := range keys {
		tokens := make([]chan int, relays)
		for j := range tokens {
			tokens[j] = make(chan int, 1)
		}
		for j := range relays {
			go func() {
				for {
					seq, ok := <-tokens[j]
					if !ok {
						errs <- nil
						return
					}
					if err := a.Tell(context.Background(), k, msg{k, seq}); err != nil {
						errs <- err
						seq = each // give up; close the ring below
					}
					next := tokens[(j+1)%relays]
					if seq+1 >= each {
						for _, c := range tokens {
							close(c)
						}
						continue
					}
					next <- seq + 1
				}
			}()
		}
		tokens[0] <- 0
	}
	for range keys * relays {
		if err := recv(t, errs, "relay"); err != nil {
			t.Fatal(err)
		}
	}
	stop(t, a)
	if n := overlap.Load(); n != 0 {
		t.Fatalf("%d messages ran while another of the same key was running", n)
	}
	for k := range keys {
		if len(got[k]) != each {
			t.Fatalf("key %d: %d messages ran, want %d", k, len(got[k]), each)
		}
		for i, seq := range got[k] {
			if seq != i {
				t.Fatalf("key %d: position %d holds message %d", k, i, seq)
			}
		}
	}
}

func TestOrderedKeysRunInParallel(t *testing.T) {
	var (
		startedA = make(chan struct{})
		startedB = make(chan struct{})
		errs     = make(chan error, 2)
	)
	a := mustNew(t, actor.Config[string, string]{
		Mode: actor.Ordered,
		Factory: stateless(func(_ context.Context, key string) {
			mine, other := startedA, startedB
			if key == "b" {
				mine, other = startedB, startedA
			}
			close(mine)
			// Each key's message waits for the other's to have started:
			// only possible if they run in parallel.
			select {
			case <-other:
				errs <- nil
			case <-time.After(long):
				errs <- fmt.Errorf("key %s: the other key never ran alongside", key)
			}
		}),
	})
	for _, k := range []string{"a", "b"} {
		if err := a.Tell(context.Background(), k, k); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := recv(t, errs, "handler"); err != nil {
			t.Fatal(err)
		}
	}
}

// blocking returns a handler that reports each message on started and then
// waits for release to be closed.
func blocking(started chan<- int, release <-chan struct{}) func() func(context.Context, int) {
	return stateless(func(_ context.Context, msg int) {
		started <- msg
		<-release
	})
}

// fill tells msgs to a, from goroutines for an Inline actor (whose Tells
// block in the handler), and returns a channel of the Tell errors.
func fill(t *testing.T, a *actor.Actor[int, int], mode actor.Mode, keys, msgs []int) <-chan error {
	t.Helper()
	errs := make(chan error, len(msgs))
	for i, m := range msgs {
		if mode == actor.Inline {
			go func() { errs <- a.Tell(context.Background(), keys[i], m) }()
			continue
		}
		if err := a.Tell(context.Background(), keys[i], m); err != nil {
			t.Fatalf("Tell(%d): %v", m, err)
		}
	}
	return errs
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
	if err := a.Tell(context.Background(), 0, -1); err != nil {
		t.Fatal(err)
	}
	t0 := recv(t, panicked, "OnPanic")
	const n = 5
	for i := range n {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatalf("Tell during backoff: %v", err)
		}
	}
	t1 := recv(t, rebuilding, "the restart")
	// Timers never fire early, so this lower bound cannot flake.
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
