package main

// Benchmarks of distributed events through the messenger, to read beside
// BenchmarkUnaryTCP:
//
//	go test -C bench -run '^$' -bench 'Event|UnaryTCP$' -benchmem .

import (
	"context"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
)

// eventPair starts an owner and a subscriber that knows it, over TCP in
// this process, and shuts both down when the benchmark ends.
func eventPair(b *testing.B) (owner, sub *velo.Messenger) {
	b.Helper()
	start := func() *velo.Messenger {
		m, err := velo.NewBuilder().AddTransport(tcpTransport()).Build(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := shutdown(m); err != nil {
				b.Error(err)
			}
		})
		return m
	}
	owner, sub = start(), start()
	if err := sub.RegisterPeer(owner.PeerInfo()); err != nil {
		b.Fatal(err)
	}
	return owner, sub
}

// BenchmarkEventLocalNewTriggerWait: one op creates an event of the
// messenger's own, awaits it, triggers it and returns from Wait.
func BenchmarkEventLocalNewTriggerWait(b *testing.B) {
	m, _ := eventPair(b)
	ev0 := m.Events()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := ev0.NewEvent()
		if err != nil {
			b.Fatal(err)
		}
		aw, err := ev0.Awaiter(ev.Handle())
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

// remoteBatch is how many events BenchmarkEventRemoteAwait has awaited at
// once, their subscriptions recorded by the owner before the timer runs.
const remoteBatch = 100

// BenchmarkEventRemoteAwait: one op is the owner's Trigger until Wait
// returns on the subscriber, one _event_trigger over TCP. Creating the
// events, awaiting them and the subscriptions happen with the timer
// stopped, a batch at a time. Allocations are both instances'.
func BenchmarkEventRemoteAwait(b *testing.B) {
	owner, sub := eventPair(b)
	ctx := context.Background()
	evs := make([]*events.Event, 0, remoteBatch)
	aws := make([]*events.Awaiter, 0, remoteBatch)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		evs, aws = evs[:0], aws[:0]
		for range min(remoteBatch, b.N-done) {
			ev, err := owner.Events().NewEvent()
			if err != nil {
				b.Fatal(err)
			}
			aw, err := sub.Events().Awaiter(ev.Handle())
			if err != nil {
				b.Fatal(err)
			}
			evs, aws = append(evs, ev), append(aws, aw)
		}
		waitSubscribed(b, owner, len(evs))
		b.StartTimer()
		for i, ev := range evs {
			if err := ev.Trigger(); err != nil {
				b.Fatal(err)
			}
			if err := aws[i].Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		done += len(evs)
	}
}

// BenchmarkEventRemoteNewAwait: one op is the whole life of a remote
// await: the owner creates an event, the subscriber awaits it (one
// _event_subscribe), the owner triggers it (one _event_trigger back) and
// the subscriber's Wait returns. The trigger may reach the owner before or
// after the subscription; both are answered.
func BenchmarkEventRemoteNewAwait(b *testing.B) {
	owner, sub := eventPair(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := owner.Events().NewEvent()
		if err != nil {
			b.Fatal(err)
		}
		aw, err := sub.Events().Awaiter(ev.Handle())
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

// waitSubscribed waits until owner records n remote subscriptions.
func waitSubscribed(b *testing.B, owner *velo.Messenger, n int) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for owner.Events().Stats().Subscriptions < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d subscriptions never reached the owner", n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}
