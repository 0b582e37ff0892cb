package events

import (
	"context"
	"testing"

	"github.com/velo-messenger/velo/peer"
)

// One op: create a local event, make an awaiter, trigger, wait.
func BenchmarkLocalNewTriggerWait(b *testing.B) {
	m := NewManager(peer.NewID(), nil, Options{})
	defer m.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := m.NewEvent()
		if err != nil {
			b.Fatal(err)
		}
		aw, err := m.Awaiter(ev.Handle())
		if err != nil {
			b.Fatal(err)
		}
		if err := ev.Trigger(); err != nil {
			b.Fatal(err)
		}
		if err := aw.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// The same, from many goroutines at once.
func BenchmarkLocalNewTriggerWaitParallel(b *testing.B) {
	m := NewManager(peer.NewID(), nil, Options{})
	defer m.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev, _ := m.NewEvent()
			aw, _ := m.Awaiter(ev.Handle())
			_ = ev.Trigger()
			if err := aw.Wait(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// One op: the owner creates an event, the other instance awaits it over the
// fake network (one subscription, one trigger back), the owner triggers.
func BenchmarkRemoteAwait(b *testing.B) {
	f := newFakeNet()
	owner, sub := f.add(b, Options{}), f.add(b, Options{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := owner.NewEvent()
		if err != nil {
			b.Fatal(err)
		}
		aw, err := sub.Awaiter(ev.Handle())
		if err != nil {
			b.Fatal(err)
		}
		if err := ev.Trigger(); err != nil {
			b.Fatal(err)
		}
		if err := aw.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// One op: a local awaiter of a remote event that completed recently
// (tier 1, no message).
func BenchmarkRemoteAwaitCached(b *testing.B) {
	f := newFakeNet()
	owner, sub := f.add(b, Options{}), f.add(b, Options{})
	ctx := context.Background()
	ev, _ := owner.NewEvent()
	aw, _ := sub.Awaiter(ev.Handle())
	_ = ev.Trigger()
	if err := aw.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		aw, err := sub.Awaiter(ev.Handle())
		if err != nil {
			b.Fatal(err)
		}
		if err := aw.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
