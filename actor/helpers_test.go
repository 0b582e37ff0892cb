package actor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/actor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// long bounds waits that end early only when the code under test is broken.
// It is generous so that a loaded machine never trips it.
const long = 10 * time.Second

// brief is how long a negative check ("this has not happened yet") looks.
// Such a check can miss a bug on a slow machine but never fails a correct
// implementation.
const brief = 20 * time.Millisecond

// recv waits for a value on ch, failing the test after long.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(long):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// quiet fails the test if ch yields a value within brief.
func quiet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s happened too early: %v", what, v)
	case <-time.After(brief):
	}
}

// stateless returns a Factory for a handler that needs no state.
func stateless[M any](fn func(context.Context, M)) func() func(context.Context, M) {
	return func() func(context.Context, M) { return fn }
}

// mustNew builds an actor and stops it when the test ends.
func mustNew[K comparable, M any](t *testing.T, cfg actor.Config[K, M]) *actor.Actor[K, M] {
	t.Helper()
	a, err := actor.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { stop(t, a) })
	return a
}

// stop stops a, failing the test if it does not finish within long.
func stop[K comparable, M any](t *testing.T, a *actor.Actor[K, M]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), long)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// collector gathers values from handler goroutines for the test goroutine.
type collector[T any] struct {
	mu   sync.Mutex
	vals []T
}

func (c *collector[T]) add(v T) {
	c.mu.Lock()
	c.vals = append(c.vals, v)
	c.mu.Unlock()
}

func (c *collector[T]) get() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.vals...)
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
