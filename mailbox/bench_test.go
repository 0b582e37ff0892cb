package mailbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/velo-messenger/velo/mailbox"
)

// BenchmarkSlotsAcquireRelease measures the cost an actor pays per message
// for admission while nobody waits: one take, one release.
func BenchmarkSlotsAcquireRelease(b *testing.B) {
	b.Run("TryAcquire", func(b *testing.B) {
		s := mailbox.NewSlots(1024, mailbox.Block)
		b.ReportAllocs()
		for b.Loop() {
			if !s.TryAcquire() {
				b.Fatal("no free slot")
			}
			s.Release()
		}
	})
	b.Run("Acquire", func(b *testing.B) {
		s := mailbox.NewSlots(1024, mailbox.Block)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
	})
}

// BenchmarkSlotsParallel measures admission from several senders at once
// with room to spare, so the count is contended but nobody waits.
func BenchmarkSlotsParallel(b *testing.B) {
	s := mailbox.NewSlots(1024, mailbox.Block)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Acquire(ctx); err != nil {
				b.Error(err)
				return
			}
			s.Release()
		}
	})
}

// BenchmarkRingPushPop measures a queue that keeps up with its producer,
// the common case for a worker's queue.
func BenchmarkRingPushPop(b *testing.B) {
	for _, depth := range []int{1, 64} {
		b.Run(fmt.Sprint("depth-", depth), func(b *testing.B) {
			var r mailbox.Ring[int]
			for i := range depth - 1 {
				r.Push(i)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Push(i)
				if _, ok := r.Pop(); !ok {
					b.Fatal("empty ring")
				}
			}
		})
	}
}
