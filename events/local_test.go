package events

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/peer"
)

func newLocal(t testing.TB, opts Options) *Manager {
	m := NewManager(peer.NewID(), nil, opts)
	t.Cleanup(m.Close)
	return m
}

// wantOutcome checks err against the outcome an event ended with: nil for a
// trigger, a poison carrying exactly reason otherwise.
func wantOutcome(err error, poisoned bool, reason string) error {
	if !poisoned {
		if err != nil {
			return errors.New("want nil, got " + err.Error())
		}
		return nil
	}
	got, ok := PoisonReason(err)
	switch {
	case !errors.Is(err, ErrPoisoned):
		return errors.New("want a poison, got " + errString(err))
	case !ok || got != reason:
		return errors.New("poison reason " + got + ", want " + reason)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestLocalManyAwaiters(t *testing.T) {
	for _, tc := range []struct {
		name     string
		poisoned bool
		reason   string
	}{
		{"trigger", false, ""},
		{"poison", true, "the disk is full: ünïcödé \x00 and all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newLocal(t, Options{})
			ev, err := m.NewEvent()
			if err != nil {
				t.Fatal(err)
			}
			ctx := waitCtx(t)
			const n = 1000
			results := make(chan error, n)
			for range n {
				aw, err := m.Awaiter(ev.Handle())
				if err != nil {
					t.Fatal(err)
				}
				go func() { results <- aw.Wait(ctx) }()
			}
			if tc.poisoned {
				err = ev.Poison(tc.reason)
			} else {
				err = ev.Trigger()
			}
			if err != nil {
				t.Fatal(err)
			}
			for range n {
				if err := wantOutcome(<-results, tc.poisoned, tc.reason); err != nil {
					t.Fatal(err)
				}
			}
			// Awaiting after completion answers at once, even with a dead ctx.
			aw, err := m.Awaiter(ev.Handle())
			if err != nil {
				t.Fatal(err)
			}
			<-aw.Done()
			dead, cancel := context.WithCancel(context.Background())
			cancel()
			if err := wantOutcome(aw.Wait(dead), tc.poisoned, tc.reason); err != nil {
				t.Fatal(err)
			}
			if st := m.Stats(); st.Pending != 0 || st.Retained != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestSecondCompletion(t *testing.T) {
	m := newLocal(t, Options{})
	ctx := waitCtx(t)
	ev, _ := m.NewEvent()
	h := ev.Handle()
	if err := ev.Poison("first"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Event.Trigger":   ev.Trigger(),
		"Event.Poison":    ev.Poison("second"),
		"Manager.Trigger": m.Trigger(ctx, h),
		"Manager.Poison":  m.Poison(ctx, h, "third"),
	} {
		if !errors.Is(err, ErrAlreadyCompleted) {
			t.Errorf("%s after completion = %v, want ErrAlreadyCompleted", name, err)
		}
	}
	aw, _ := m.Awaiter(h)
	if err := wantOutcome(aw.Wait(ctx), true, "first"); err != nil {
		t.Fatal(err)
	}
}

func TestManagerCompletesLocalHandle(t *testing.T) {
	m := newLocal(t, Options{})
	ctx := waitCtx(t)
	ev, _ := m.NewEvent()
	aw, _ := m.Awaiter(ev.Handle())
	if err := m.Poison(ctx, ev.Handle(), "by handle"); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw.Wait(ctx), true, "by handle"); err != nil {
		t.Fatal(err)
	}
	if err := ev.Trigger(); !errors.Is(err, ErrAlreadyCompleted) {
		t.Fatalf("Event.Trigger after Manager.Poison = %v", err)
	}
}

// Slots are reused with a new generation: a stale handle gets its own
// outcome (through an awaiter made before the reuse) or ErrEventGone, never
// the newer event's outcome.
func TestSlotReuseGenerations(t *testing.T) {
	m := newLocal(t, Options{RetainCompleted: -1}) // reuse at once
	ctx := waitCtx(t)

	ev1, _ := m.NewEvent()
	h1 := ev1.Handle()
	early, _ := m.Awaiter(h1) // waiting before completion
	if err := ev1.Poison("old"); err != nil {
		t.Fatal(err)
	}
	late, _ := m.Awaiter(h1) // made after completion, before reuse

	ev2, _ := m.NewEvent()
	h2 := ev2.Handle()
	if h2.Index != h1.Index || h2.Generation != h1.Generation+1 {
		t.Fatalf("slot not reused: %v then %v", h1, h2)
	}
	if _, err := m.Awaiter(h1); !errors.Is(err, ErrEventGone) {
		t.Fatalf("Awaiter(stale) = %v, want ErrEventGone", err)
	}
	if err := ev1.Trigger(); !errors.Is(err, ErrAlreadyCompleted) {
		t.Fatalf("stale Event.Trigger = %v, want ErrAlreadyCompleted", err)
	}
	if err := m.Trigger(ctx, h1); !errors.Is(err, ErrEventGone) {
		t.Fatalf("Manager.Trigger(stale) = %v, want ErrEventGone", err)
	}
	aw2, _ := m.Awaiter(h2)
	if err := ev2.Trigger(); err != nil {
		t.Fatal(err)
	}
	for _, aw := range []*Awaiter{early, late} {
		if err := wantOutcome(aw.Wait(ctx), true, "old"); err != nil {
			t.Fatalf("stale awaiter: %v", err)
		}
	}
	if err := aw2.Wait(ctx); err != nil {
		t.Fatalf("new event: %v", err)
	}
	// A handle from the future, or for a slot never used, is unknown too;
	// so is one with epoch 0, which no manager issues.
	for _, h := range []Handle{
		{Owner: m.Self(), Epoch: m.Epoch(), Index: h2.Index, Generation: h2.Generation + 5},
		{Owner: m.Self(), Epoch: m.Epoch(), Index: 99, Generation: 1},
		{Owner: m.Self(), Index: h2.Index, Generation: h2.Generation},
		{Owner: m.Self()},
	} {
		if _, err := m.Awaiter(h); !errors.Is(err, ErrEventGone) {
			t.Errorf("Awaiter(%v) = %v, want ErrEventGone", h, err)
		}
	}
	if st := m.Stats(); st.Slots != 1 {
		t.Fatalf("slots %d, want 1 (reused)", st.Slots)
	}
}

// An instance restarted under the same ID is a new Manager, whose first
// event takes the slot and generation of the old one's first event. A
// handle of the old incarnation is refused by the new one with
// ErrOwnerRestarted (an ErrOwnerLost) and never touches the new event.
func TestHandleOfEarlierIncarnation(t *testing.T) {
	ctx := waitCtx(t)
	id := peer.NewID()
	before := NewManager(id, nil, Options{})
	old, _ := before.NewEvent()
	h1 := old.Handle()
	before.Close()
	m := NewManager(id, nil, Options{})
	t.Cleanup(m.Close)
	ev, _ := m.NewEvent()
	h2 := ev.Handle()
	if h1.Epoch == 0 || h2.Epoch == 0 || h1.Epoch == h2.Epoch || h2.Epoch != m.Epoch() {
		t.Fatalf("epochs %016x then %016x (manager %016x): want two different non-zero ones", h1.Epoch, h2.Epoch, m.Epoch())
	}
	if h2.Index != h1.Index || h2.Generation != h1.Generation {
		t.Fatalf("the new incarnation's first event %v is not in the slot of %v", h2, h1)
	}

	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrOwnerRestarted) || !errors.Is(err, ErrOwnerLost) || errors.Is(err, ErrEventGone) {
			t.Errorf("%s: %v, want ErrOwnerRestarted (and ErrOwnerLost)", what, err)
		}
	}
	_, err := m.Awaiter(h1)
	check("Awaiter", err)
	check("Trigger", m.Trigger(ctx, h1))
	check("Poison", m.Poison(ctx, h1, "not yours"))
	check("Deliver complete", m.Deliver(ctx, peer.NewID(), CompleteHandler, appendOutcome(nil, h1, kindTriggered, "")))

	// The new event saw none of it.
	if st := m.Stats(); st.Pending != 1 {
		t.Fatalf("stats %+v, want the new event still pending", st)
	}
	aw, _ := m.Awaiter(h2)
	if err := ev.Poison("new"); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw.Wait(ctx), true, "new"); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(old)
}

// The last RetainCompleted completed events keep their outcome.
func TestRetainCompleted(t *testing.T) {
	const retain = 8
	m := newLocal(t, Options{RetainCompleted: retain})
	ctx := waitCtx(t)
	var hs []Handle
	for i := range 100 {
		ev, _ := m.NewEvent()
		hs = append(hs, ev.Handle())
		if err := ev.Poison(string(rune('a' + i%26))); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hs {
		aw, err := m.Awaiter(h)
		if i < len(hs)-retain {
			continue // may be reused, or not yet
		}
		if err != nil {
			t.Fatalf("event %d of the last %d: %v", i, retain, err)
		}
		if err := wantOutcome(aw.Wait(ctx), true, string(rune('a'+i%26))); err != nil {
			t.Fatal(err)
		}
	}
	if st := m.Stats(); st.Slots > retain+1 || st.Pending != 0 {
		t.Fatalf("stats %+v: slot table should stay near %d", st, retain)
	}
}

func TestWaitContext(t *testing.T) {
	m := newLocal(t, Options{})
	ev, _ := m.NewEvent()
	aw, _ := m.Awaiter(ev.Handle())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := aw.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(canceled) = %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := aw.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(deadline) = %v", err)
	}
	select {
	case <-aw.Done():
		t.Fatal("Done closed before completion")
	default:
	}
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestReasonTooLong(t *testing.T) {
	m := newLocal(t, Options{})
	ctx := waitCtx(t)
	ev, _ := m.NewEvent()
	long := strings.Repeat("x", MaxReasonLen+1)
	if err := ev.Poison(long); !errors.Is(err, ErrReasonTooLong) {
		t.Fatalf("Poison(long) = %v", err)
	}
	if err := m.Poison(ctx, ev.Handle(), long); !errors.Is(err, ErrReasonTooLong) {
		t.Fatalf("Manager.Poison(long) = %v", err)
	}
	aw, _ := m.Awaiter(ev.Handle())
	if err := ev.Poison(long[:MaxReasonLen]); err != nil {
		t.Fatal(err)
	}
	if err := wantOutcome(aw.Wait(ctx), true, long[:MaxReasonLen]); err != nil {
		t.Fatal(err)
	}
}

// An Event dropped without completion is poisoned by its cleanup, so its
// awaiter wakes instead of waiting forever.
func TestDroppedEventIsPoisoned(t *testing.T) {
	m := newLocal(t, Options{})
	aw := func() *Awaiter {
		ev, err := m.NewEvent()
		if err != nil {
			t.Fatal(err)
		}
		aw, err := m.Awaiter(ev.Handle())
		if err != nil {
			t.Fatal(err)
		}
		return aw // ev is unreachable from here on
	}()
	ctx := waitCtx(t)
	gcUntilDone(t, ctx, aw)
	if err := wantOutcome(aw.Wait(ctx), true, DroppedReason); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// gcUntilDone runs the collector until aw's event completed, or fails the
// test when ctx ends.
func gcUntilDone(t testing.TB, ctx context.Context, aw *Awaiter) {
	t.Helper()
	for {
		runtime.GC()
		select {
		case <-aw.Done():
			return
		case <-ctx.Done():
			t.Fatal("dropped event was never poisoned")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A completed Event that is then dropped changes nothing, and its cleanup
// does not touch the event that reuses its slot.
func TestDroppedCompletedEventKeepsOutcome(t *testing.T) {
	m := newLocal(t, Options{RetainCompleted: -1})
	ctx := waitCtx(t)
	h1 := func() Handle {
		ev, _ := m.NewEvent()
		if err := ev.Trigger(); err != nil {
			t.Fatal(err)
		}
		return ev.Handle()
	}()
	ev2, _ := m.NewEvent() // reuses h1's slot
	if ev2.Handle().Index != h1.Index {
		t.Fatal("slot not reused")
	}
	aw2, _ := m.Awaiter(ev2.Handle())
	for range 5 {
		runtime.GC()
	}
	select {
	case <-aw2.Done():
		t.Fatalf("live event completed by a stale cleanup: %v", aw2.Wait(ctx))
	default:
	}
	if err := ev2.Trigger(); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(ev2)
}

func TestCloseLocal(t *testing.T) {
	m := NewManager(peer.NewID(), nil, Options{})
	ctx := waitCtx(t)
	ev, _ := m.NewEvent()
	aw, _ := m.Awaiter(ev.Handle())
	done, _ := m.NewEvent()
	if err := done.Trigger(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.Close() // idempotent
	if err := wantOutcome(aw.Wait(ctx), true, ClosedReason); err != nil {
		t.Fatal(err)
	}
	if _, err := m.NewEvent(); !errors.Is(err, ErrClosed) {
		t.Errorf("NewEvent after Close = %v", err)
	}
	if _, err := m.Awaiter(ev.Handle()); !errors.Is(err, ErrClosed) {
		t.Errorf("Awaiter after Close = %v", err)
	}
	if err := ev.Trigger(); !errors.Is(err, ErrClosed) {
		t.Errorf("Trigger after Close = %v", err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after Close = %v", err)
	}
}

func TestRemoteHandleWithoutNetwork(t *testing.T) {
	m := newLocal(t, Options{})
	h := Handle{Owner: peer.NewID(), Epoch: 1, Index: 1, Generation: 1}
	if _, err := m.Awaiter(h); !errors.Is(err, ErrNoNetwork) {
		t.Errorf("Awaiter = %v", err)
	}
	if err := m.Trigger(waitCtx(t), h); !errors.Is(err, ErrNoNetwork) {
		t.Errorf("Trigger = %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string // "" for valid options; else a part of the error
	}{
		{Options{}, ""},
		{Options{RetainCompleted: -1}, ""}, // none retained
		{Options{CacheSize: -1}, "velo: events: negative CacheSize -1"},
		{Options{OwnerLostAfter: -time.Second}, "velo: events: negative OwnerLostAfter -1s"},
		{Options{SendTimeout: -time.Millisecond}, "velo: events: negative SendTimeout -1ms"},
	} {
		err := tc.opts.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	d := Options{}.withDefaults()
	if d.CacheSize != DefaultCacheSize || d.OwnerLostAfter != DefaultOwnerLostAfter ||
		d.SendTimeout != DefaultSendTimeout || d.RetainCompleted != DefaultRetainCompleted || d.Logger == nil {
		t.Errorf("defaults %+v", d)
	}
}

func TestNewManagerPanicsOnBadOptions(t *testing.T) {
	defer func() {
		err, _ := recover().(error)
		if err == nil || !strings.Contains(err.Error(), "negative CacheSize -1") {
			t.Errorf("NewManager panicked with %v, want the options' error", err)
		}
	}()
	NewManager(peer.NewID(), nil, Options{CacheSize: -1})
}

func TestPoisonErrorIs(t *testing.T) {
	var err error = &PoisonError{Reason: "r"}
	if !errors.Is(err, ErrPoisoned) || errors.Is(err, ErrOwnerLost) {
		t.Fatal("PoisonError.Is")
	}
	if r, ok := PoisonReason(errors.Join(errors.New("x"), err)); !ok || r != "r" {
		t.Fatal("PoisonReason through a wrapper")
	}
	if _, ok := PoisonReason(ErrPoisoned); ok {
		t.Fatal("PoisonReason(sentinel)")
	}
}
