package events

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func newPair(t testing.TB, opts Options) (*fakeNet, *Manager, *Manager) {
	f := newFakeNet()
	return f, f.add(t, opts), f.add(t, opts)
}

func TestRemoteTriggerAndPoison(t *testing.T) {
	for _, tc := range []struct {
		name     string
		poisoned bool
		reason   string
	}{
		{"trigger", false, ""},
		{"poison", true, "upstream said: \"no\" — ✗\n\x00\xff"},
		{"poison empty reason", true, ""},
		{"poison longest reason", true, strings.Repeat("r", MaxReasonLen)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, owner, sub := newPair(t, Options{})
			ctx := waitCtx(t)
			ev, _ := owner.NewEvent()
			aw, err := sub.Awaiter(ev.Handle())
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })
			if tc.poisoned {
				err = ev.Poison(tc.reason)
			} else {
				err = ev.Trigger()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := wantOutcome(aw.Wait(ctx), tc.poisoned, tc.reason); err != nil {
				t.Fatal(err)
			}
			if n := f.count(SubscribeHandler); n != 1 {
				t.Errorf("%d subscribe messages, want 1", n)
			}
			if n := f.count(TriggerHandler); n != 1 {
				t.Errorf("%d trigger messages, want 1", n)
			}
		})
	}
}

// A non-owner completes an event through its owner; the owner's awaiters
// and every subscriber see the outcome.
func TestNonOwnerCompletes(t *testing.T) {
	for _, poison := range []bool{false, true} {
		t.Run(fmt.Sprint("poison=", poison), func(t *testing.T) {
			f := newFakeNet()
			owner, a, b := f.add(t, Options{}), f.add(t, Options{}), f.add(t, Options{})
			ctx := waitCtx(t)
			ev, _ := owner.NewEvent()
			h := ev.Handle()
			local, _ := owner.Awaiter(h)
			awA, _ := a.Awaiter(h)
			awB, _ := b.Awaiter(h)
			waitFor(t, "subscriptions", func() bool { return owner.Stats().Subscriptions == 2 })

			var err error
			if poison {
				err = a.Poison(ctx, h, "a gave up")
			} else {
				err = a.Trigger(ctx, h)
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, aw := range map[string]*Awaiter{"owner": local, "a": awA, "b": awB} {
				if err := wantOutcome(aw.Wait(ctx), poison, "a gave up"); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			if err := ev.Trigger(); !errors.Is(err, ErrAlreadyCompleted) {
				t.Errorf("owner Trigger after remote completion = %v", err)
			}
			// a knows the outcome from its cache: a second completion is
			// refused without a message.
			if err := a.Trigger(ctx, h); !errors.Is(err, ErrAlreadyCompleted) {
				t.Errorf("second remote Trigger = %v", err)
			}
			if n := f.count(CompleteHandler); n != 1 {
				t.Errorf("%d complete messages, want 1", n)
			}
		})
	}
}

// A complete message that loses is reported by the owner's Deliver.
func TestRemoteCompleteLoses(t *testing.T) {
	f, owner, other := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := other.Poison(ctx, ev.Handle(), "late"); err != nil {
		t.Fatal(err)
	}
	var errs []error
	waitFor(t, "the owner's answer", func() bool { errs = append(errs, f.takeErrs()...); return len(errs) > 0 })
	if len(errs) != 1 || !errors.Is(errs[0], ErrAlreadyCompleted) {
		t.Fatalf("owner Deliver errors %v, want one ErrAlreadyCompleted", errs)
	}
}

// Tier 2: every local awaiter of one remote event shares one proxy, so the
// owner gets exactly one subscription.
func TestPiggyback(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	const n = 1000
	results := make(chan error, n)
	var start sync.WaitGroup
	start.Add(1)
	for range n {
		go func() {
			start.Wait()
			aw, err := sub.Awaiter(ev.Handle())
			if err != nil {
				results <- err
				return
			}
			results <- aw.Wait(ctx)
		}()
	}
	start.Done()
	waitFor(t, "1000 awaiters", func() bool { return sub.Stats().Proxies == 1 && owner.Stats().Subscriptions == 1 })
	if err := ev.Poison("shared"); err != nil {
		t.Fatal(err)
	}
	for range n {
		r := <-results
		// Awaiters made after the outcome arrived are answered by tier 1.
		if err := wantOutcome(r, true, "shared"); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count(SubscribeHandler); got != 1 {
		t.Fatalf("%d subscribe messages for %d awaiters, want 1", got, n)
	}
	if got := f.count(TriggerHandler); got != 1 {
		t.Fatalf("%d trigger messages, want 1", got)
	}
}

// Tier 1: a remote event that completed recently is answered from the
// cache, without any message.
func TestCachedRemoteOutcome(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	aw, _ := sub.Awaiter(ev.Handle())
	waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })
	if err := ev.Poison("cached"); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw.Wait(ctx), true, "cached"); err != nil {
		t.Fatal(err)
	}
	before := [3]int{f.count(SubscribeHandler), f.count(TriggerHandler), f.count(CompleteHandler)}
	for range 100 {
		again, err := sub.Awaiter(ev.Handle())
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-again.Done():
		default:
			t.Fatal("cached outcome not answered at once")
		}
		if err := wantOutcome(again.Wait(ctx), true, "cached"); err != nil {
			t.Fatal(err)
		}
	}
	after := [3]int{f.count(SubscribeHandler), f.count(TriggerHandler), f.count(CompleteHandler)}
	if before != after {
		t.Fatalf("messages went out for cached awaits: %v then %v", before, after)
	}
	// The link goroutine that sent the subscription may still be on its
	// way out; once it is, nothing is left but the cached outcome.
	waitFor(t, "the subscriber to forget the owner", func() bool { return sub.Stats().Peers == 0 })
	if st := sub.Stats(); st.Cached != 1 || st.Proxies != 0 {
		t.Fatalf("subscriber stats %+v", st)
	}
}

// Awaiting a remote event that already completed gets its outcome from the
// owner's answer to the subscription.
func TestSubscribeAfterCompletion(t *testing.T) {
	_, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	if err := ev.Poison("before you asked"); err != nil {
		t.Fatal(err)
	}
	aw, _ := sub.Awaiter(ev.Handle())
	if err := wantOutcome(aw.Wait(ctx), true, "before you asked"); err != nil {
		t.Fatal(err)
	}
	if st := owner.Stats(); st.Subscriptions != 0 {
		t.Fatalf("owner recorded a subscription for a completed event: %+v", st)
	}
}

// A stale remote handle gets ErrEventGone, never the outcome of the event
// that reused its slot.
func TestStaleRemoteHandle(t *testing.T) {
	_, owner, sub := newPair(t, Options{RetainCompleted: -1})
	ctx := waitCtx(t)
	ev1, _ := owner.NewEvent()
	if err := ev1.Poison("old"); err != nil {
		t.Fatal(err)
	}
	ev2, _ := owner.NewEvent() // reuses the slot
	if err := ev2.Trigger(); err != nil {
		t.Fatal(err)
	}
	aw, _ := sub.Awaiter(ev1.Handle())
	if err := aw.Wait(ctx); !errors.Is(err, ErrEventGone) {
		t.Fatalf("stale remote handle: %v, want ErrEventGone", err)
	}
	if err := sub.Trigger(ctx, ev1.Handle()); !errors.Is(err, ErrEventGone) {
		t.Fatalf("Trigger on a handle known gone: %v", err)
	}
}

// The owner of an awaited event is killed and restarted under the same ID,
// and its first new event takes the old event's slot and generation. The
// awaiter re-subscribes once told of the disconnect; the new incarnation
// answers that the handle is not its own, and the awaiter fails with
// ErrOwnerRestarted (an ErrOwnerLost) at once, never with the new event's
// outcome. The answer is cached: it cannot change.
func TestOwnerRestartedRemoteAwaiter(t *testing.T) {
	f, owner, sub := newPair(t, Options{OwnerLostAfter: time.Minute})
	ctx := waitCtx(t)
	ev1, _ := owner.NewEvent()
	h1 := ev1.Handle()
	aw, _ := sub.Awaiter(h1)
	waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })

	owner = f.restart(t, owner, Options{})
	ev2, _ := owner.NewEvent()
	h2 := ev2.Handle()
	if h2.Index != h1.Index || h2.Generation != h1.Generation || h2.Epoch == h1.Epoch {
		t.Fatalf("restarted owner's first event %v, want the slot of %v under another epoch", h2, h1)
	}
	sub.PeerDisconnected(owner.Self()) // the killed process's connection ended
	err := aw.Wait(ctx)
	if !errors.Is(err, ErrOwnerRestarted) || !errors.Is(err, ErrOwnerLost) {
		t.Fatalf("awaiting a handle of the killed owner: %v, want ErrOwnerRestarted", err)
	}
	if st := owner.Stats(); st.Subscriptions != 0 || st.Pending != 1 {
		t.Fatalf("restarted owner recorded the old handle: %+v", st)
	}

	before := f.count(SubscribeHandler)
	again, _ := sub.Awaiter(h1)
	if err := again.Wait(ctx); !errors.Is(err, ErrOwnerRestarted) {
		t.Fatalf("second await of the old handle: %v", err)
	}
	if err := sub.Trigger(ctx, h1); !errors.Is(err, ErrOwnerRestarted) {
		t.Fatalf("Trigger on the old handle: %v", err)
	}
	if n := f.count(SubscribeHandler); n != before {
		t.Fatalf("%d more subscriptions for an answer already known", n-before)
	}

	// The new event works as any other.
	aw2, _ := sub.Awaiter(h2)
	if err := ev2.Poison("new incarnation"); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw2.Wait(ctx), true, "new incarnation"); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(ev1)
}

// The other way round: a subscriber holds the cached outcome of the killed
// owner's event; the restarted owner's event in the same slot is a
// different handle, so awaiting it asks the new owner instead of answering
// from the cache.
func TestOwnerRestartedCachedOutcome(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev1, _ := owner.NewEvent()
	aw1, _ := sub.Awaiter(ev1.Handle())
	waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })
	if err := ev1.Poison("old incarnation"); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw1.Wait(ctx), true, "old incarnation"); err != nil {
		t.Fatal(err)
	}

	owner = f.restart(t, owner, Options{})
	sub.PeerDisconnected(owner.Self())
	ev2, _ := owner.NewEvent()
	aw2, _ := sub.Awaiter(ev2.Handle())
	select {
	case <-aw2.Done():
		t.Fatalf("the new incarnation's event answered from the cache: %v", aw2.Wait(ctx))
	default:
	}
	waitFor(t, "subscription to the new incarnation", func() bool { return owner.Stats().Subscriptions == 1 })
	if err := ev2.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := aw2.Wait(ctx); err != nil {
		t.Fatalf("awaiting the new incarnation's event: %v, want nil", err)
	}
}

// Trigger and subscription start together, many times over: whichever
// reaches the owner first, the awaiter wakes with the right outcome.
func TestTriggerSubscribeRace(t *testing.T) {
	_, owner, sub := newPair(t, Options{})
	const iterations = 1000
	ctx := waitCtx(t)
	type result struct {
		i   int
		err error
	}
	results := make(chan result, 2*iterations)
	for i := range iterations {
		ev, err := owner.NewEvent()
		if err != nil {
			t.Fatal(err)
		}
		poison := i%2 == 1
		reason := fmt.Sprint("reason ", i)
		var start sync.WaitGroup
		start.Add(1)
		go func() {
			start.Wait()
			var err error
			if poison {
				err = ev.Poison(reason)
			} else {
				err = ev.Trigger()
			}
			results <- result{i, err}
		}()
		go func() {
			start.Wait()
			aw, err := sub.Awaiter(ev.Handle())
			if err == nil {
				err = wantOutcome(aw.Wait(ctx), poison, reason)
			}
			results <- result{i, err}
		}()
		start.Done()
	}
	for range 2 * iterations {
		if r := <-results; r.err != nil {
			t.Fatalf("iteration %d: %v", r.i, r.err)
		}
	}
	waitFor(t, "bookkeeping to drain", func() bool {
		o, s := owner.Stats(), sub.Stats()
		return o.Subscriptions == 0 && o.Pending == 0 && o.Peers == 0 && s.Proxies == 0 && s.Peers == 0
	})
}

// Owner lost: after a disconnect, sends to the owner keep failing, and its
// awaiters fail with ErrOwnerLost once OwnerLostAfter has passed.
func TestOwnerLostAfterDisconnect(t *testing.T) {
	f, owner, sub := newPair(t, Options{OwnerLostAfter: 50 * time.Millisecond})
	ctx := waitCtx(t)
	ev1, _ := owner.NewEvent()
	ev2, _ := owner.NewEvent()
	aw1, _ := sub.Awaiter(ev1.Handle())
	aw1b, _ := sub.Awaiter(ev1.Handle())
	aw2, _ := sub.Awaiter(ev2.Handle())
	waitFor(t, "subscriptions", func() bool { return owner.Stats().Subscriptions == 2 })

	f.setFail(owner.Self(), true)
	sub.PeerDisconnected(owner.Self())
	for _, aw := range []*Awaiter{aw1, aw1b, aw2} {
		if err := aw.Wait(ctx); !errors.Is(err, ErrOwnerLost) {
			t.Fatalf("Wait = %v, want ErrOwnerLost", err)
		}
	}
	waitFor(t, "the subscriber to forget the owner", func() bool { return sub.Stats().Peers == 0 })
	if st := sub.Stats(); st.Proxies != 0 || st.Cached != 0 || st.Queued != 0 {
		t.Fatalf("subscriber stats after owner lost: %+v", st)
	}
	// A failure is not cached: once the owner is back, awaiting works.
	f.setFail(owner.Self(), false)
	aw, _ := sub.Awaiter(ev1.Handle())
	if err := ev1.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Wait(ctx); err != nil {
		t.Fatalf("after the owner came back: %v", err)
	}
	runtime.KeepAlive(ev2) // or its cleanup would poison it
}

// A subscription whose send fails counts like a lost owner.
func TestOwnerLostOnSubscribe(t *testing.T) {
	f, owner, sub := newPair(t, Options{OwnerLostAfter: 30 * time.Millisecond})
	ev, _ := owner.NewEvent()
	f.setFail(owner.Self(), true)
	aw, _ := sub.Awaiter(ev.Handle())
	if err := aw.Wait(waitCtx(t)); !errors.Is(err, ErrOwnerLost) {
		t.Fatalf("Wait = %v, want ErrOwnerLost", err)
	}
	if n := f.count(SubscribeHandler); n != 0 {
		t.Fatalf("%d subscriptions arrived through a failing network", n)
	}
	runtime.KeepAlive(ev)
}

// The connection drops and comes back: the subscriber re-subscribes and
// the owner, which dropped the old subscription, answers at once because
// the event completed meanwhile. The subscriber retries on its own backoff,
// or at once when told the peer is connected again.
func TestResubscribeAfterReconnect(t *testing.T) {
	for _, tell := range []bool{true, false} {
		t.Run(fmt.Sprint("PeerConnected=", tell), func(t *testing.T) {
			f, owner, sub := newPair(t, Options{OwnerLostAfter: time.Minute})
			ctx := waitCtx(t)
			ev, _ := owner.NewEvent()
			pending, _ := owner.NewEvent()
			aw, _ := sub.Awaiter(ev.Handle())
			awPending, _ := sub.Awaiter(pending.Handle())
			waitFor(t, "subscriptions", func() bool { return owner.Stats().Subscriptions == 2 })

			f.setFail(owner.Self(), true)
			f.setFail(sub.Self(), true)
			owner.PeerDisconnected(sub.Self())
			sub.PeerDisconnected(owner.Self())
			if st := owner.Stats(); st.Subscriptions != 0 {
				t.Fatalf("owner kept subscriptions of a disconnected peer: %+v", st)
			}
			if err := ev.Poison("while you were away"); err != nil {
				t.Fatal(err)
			}
			if n := f.count(TriggerHandler); n != 0 {
				t.Fatalf("%d triggers sent to a dropped subscriber", n)
			}
			// Let the subscriber fail and back off a few times.
			waitFor(t, "failed re-subscriptions", func() bool { return f.failures(SubscribeHandler) >= 3 })
			f.setFail(owner.Self(), false)
			f.setFail(sub.Self(), false)
			if tell {
				owner.PeerConnected(sub.Self())
				sub.PeerConnected(owner.Self())
			}
			if err := wantOutcome(aw.Wait(ctx), true, "while you were away"); err != nil {
				t.Fatal(err)
			}
			// The still-pending event was re-subscribed too.
			waitFor(t, "re-subscription", func() bool { return owner.Stats().Subscriptions == 1 })
			if err := pending.Trigger(); err != nil {
				t.Fatal(err)
			}
			if err := awPending.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A disconnect that the network recovers from at once: the re-sent
// subscription is idempotent on the owner.
func TestDisconnectRecoversAtOnce(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	aw, _ := sub.Awaiter(ev.Handle())
	waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })
	sub.PeerDisconnected(owner.Self())
	waitFor(t, "re-subscription", func() bool { return f.count(SubscribeHandler) == 2 && sub.Stats().Queued == 0 })
	waitFor(t, "re-subscription delivered", f.quiet)
	if st := owner.Stats(); st.Subscriptions != 1 {
		t.Fatalf("owner subscriptions %d after a duplicate, want 1", st.Subscriptions)
	}
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count(TriggerHandler); n != 1 {
		t.Fatalf("%d triggers, want 1", n)
	}
}

// Subscriber lost: the owner drops its subscriptions and sends nothing to
// it on completion.
func TestSubscriberLost(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	var evs []*Event
	for range 10 {
		ev, _ := owner.NewEvent()
		evs = append(evs, ev)
		if _, err := sub.Awaiter(ev.Handle()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "subscriptions", func() bool { return owner.Stats().Subscriptions == 10 })
	owner.PeerDisconnected(sub.Self())
	if st := owner.Stats(); st.Subscriptions != 0 || st.Peers != 0 {
		t.Fatalf("owner stats after subscriber lost: %+v", st)
	}
	for _, ev := range evs {
		if err := ev.Trigger(); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count(TriggerHandler); n != 0 {
		t.Fatalf("%d triggers sent to a lost subscriber", n)
	}
}

// Triggers the owner cannot deliver are retried, then dropped once the
// subscriber has been unreachable for OwnerLostAfter.
func TestUndeliverableTriggersDropped(t *testing.T) {
	f, owner, sub := newPair(t, Options{OwnerLostAfter: 30 * time.Millisecond})
	ev, _ := owner.NewEvent()
	if _, err := sub.Awaiter(ev.Handle()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })
	f.setFail(sub.Self(), true)
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the trigger to be dropped", func() bool {
		st := owner.Stats()
		return st.Queued == 0 && st.Peers == 0
	})
}

// Lost messages are what the reconnect path is for: a subscription that
// vanished is restored by the re-subscription after a disconnect.
func TestLostSubscriptionRestoredByDisconnect(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	f.setDrop(owner.Self(), true)
	aw, _ := sub.Awaiter(ev.Handle())
	waitFor(t, "the subscription to vanish", func() bool { return f.count(SubscribeHandler) == 1 })
	f.setDrop(owner.Self(), false)
	sub.PeerDisconnected(owner.Self())
	waitFor(t, "re-subscription", func() bool { return owner.Stats().Subscriptions == 1 })
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// An Event dropped without completion is poisoned for remote awaiters too.
func TestDroppedEventPoisonsRemoteAwaiters(t *testing.T) {
	_, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	aw := func() *Awaiter {
		ev, _ := owner.NewEvent()
		aw, _ := sub.Awaiter(ev.Handle())
		return aw
	}()
	waitFor(t, "subscription", func() bool { return owner.Stats().Subscriptions == 1 })
	gcUntilDone(t, ctx, aw)
	if err := wantOutcome(aw.Wait(ctx), true, DroppedReason); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWithRemoteState(t *testing.T) {
	f, owner, sub := newPair(t, Options{})
	ctx := waitCtx(t)
	ev, _ := owner.NewEvent()
	subEv, _ := sub.NewEvent()
	aw, _ := sub.Awaiter(ev.Handle())
	ownerAw, _ := owner.Awaiter(subEv.Handle())
	waitFor(t, "subscriptions", func() bool {
		return owner.Stats().Subscriptions == 1 && sub.Stats().Subscriptions == 1
	})
	// The owner shuts down: pending events are poisoned and the news is
	// flushed to the subscriber before Shutdown returns.
	if err := owner.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw.Wait(ctx), true, ClosedReason); err != nil {
		t.Fatal(err)
	}
	if err := ownerAw.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("remote awaiter of a closed manager: %v, want ErrClosed", err)
	}
	if err := ev.Trigger(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Trigger after Shutdown: %v", err)
	}
	if n := f.count(TriggerHandler); n != 1 {
		t.Fatalf("%d triggers, want the one poison", n)
	}
	runtime.KeepAlive(subEv)
}

// Create, await remotely and complete 100 000 events: every count returns
// to zero (the slot table and the cache stay within their bounds) and the
// heap returns near its baseline.
func TestMemoryReturnsToBaseline(t *testing.T) {
	total, batch := 100_000, 1000
	if testing.Short() {
		total = 10_000
	}
	const cache, retain = 512, 256
	f, owner, sub := newPair(t, Options{CacheSize: cache, RetainCompleted: retain})
	ctx := waitCtx(t)

	round := func(n int) {
		evs := make([]*Event, n)
		aws := make([]*Awaiter, n)
		for i := range n {
			evs[i], _ = owner.NewEvent()
			aws[i], _ = sub.Awaiter(evs[i].Handle())
		}
		waitFor(t, "subscriptions", func() bool { return owner.Stats().Subscriptions == n })
		for i, ev := range evs {
			var err error
			if i%3 == 0 {
				err = ev.Poison("p")
			} else {
				err = ev.Trigger()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, aw := range aws {
			if err := aw.Wait(ctx); err != nil && !errors.Is(err, ErrPoisoned) {
				t.Fatal(err)
			}
		}
	}
	settle := func() uint64 {
		waitFor(t, "deliveries", f.quiet)
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}

	round(batch) // warm up: slot table, cache and pools at their steady size
	base := settle()
	for done := 0; done < total; done += batch {
		round(batch)
	}
	waitFor(t, "bookkeeping to drain", func() bool {
		o, s := owner.Stats(), sub.Stats()
		return o.Pending == 0 && o.Subscriptions == 0 && o.Queued == 0 && o.Peers == 0 &&
			s.Proxies == 0 && s.Queued == 0 && s.Peers == 0
	})
	after := settle()
	o, s := owner.Stats(), sub.Stats()
	if o.Slots > batch+retain+1 || s.Cached > cache {
		t.Fatalf("bounds exceeded: owner %+v, subscriber %+v", o, s)
	}
	const margin = 8 << 20
	if after > base+margin {
		t.Fatalf("heap %d bytes after %d events, baseline %d: grew by more than %d", after, total, base, margin)
	}
	t.Logf("heap baseline %d, after %d events %d; owner %+v; subscriber %+v", base, total, after, o, s)
}
