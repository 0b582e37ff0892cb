package actor_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/actor"
)

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
