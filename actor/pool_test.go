package actor_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/actor"
)

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
