package actor_test

import (
	"context"
	"testing"

	"github.com/velo-messenger/velo/actor"
)

func benchActor(b *testing.B, cfg actor.Config[int, int]) *actor.Actor[int, int] {
	b.Helper()
	cfg.Restart = actor.DefaultRestartPolicy()
	cfg.Factory = stateless(func(context.Context, int) {})
	a, err := actor.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func benchTell(b *testing.B, a *actor.Actor[int, int], keys int) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := a.Tell(ctx, i%keys, i); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkTellInline(b *testing.B) {
	benchTell(b, benchActor(b, actor.Config[int, int]{Mode: actor.Inline}), 1)
}

func BenchmarkTellSpawn(b *testing.B) {
	b.Run("uncapped", func(b *testing.B) {
		benchTell(b, benchActor(b, actor.Config[int, int]{Mode: actor.Spawn}), 1)
	})
	b.Run("capped-4", func(b *testing.B) {
		benchTell(b, benchActor(b, actor.Config[int, int]{Mode: actor.Spawn, MaxConcurrency: 4}), 1)
	})
}

func BenchmarkTellOrdered(b *testing.B) {
	b.Run("1-key", func(b *testing.B) {
		benchTell(b, benchActor(b, actor.Config[int, int]{Mode: actor.Ordered}), 1)
	})
	b.Run("64-keys", func(b *testing.B) {
		benchTell(b, benchActor(b, actor.Config[int, int]{Mode: actor.Ordered}), 64)
	})
}

// BenchmarkTellParallel measures Tell from several receive goroutines at once.
func BenchmarkTellParallel(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			a := benchActor(b, actor.Config[int, int]{Mode: m.mode, MaxConcurrency: m.conc})
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := a.Tell(ctx, i%64, i); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			if err := a.Stop(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
