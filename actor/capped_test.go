package actor_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/velo-messenger/velo/actor"
)

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
