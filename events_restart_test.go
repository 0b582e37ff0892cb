package velo_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// TestEventHandleAcrossOwnerRestart: an owner process with a fixed
// instance id creates E1, which an instance awaits; the owner is killed
// (SIGKILL) and started again with the same id, and the new process's
// first event E2 takes the slot E1 had (same index, same generation). The
// awaiter of E1, once it reaches the new process, must fail with
// ErrOwnerLost (events.ErrOwnerRestarted: the handle's epoch is not the new
// process's), well before the owner-lost bound, and must never report
// E2's outcome.
//
// The restarted owner listens on a new port, and the awaiter learns it
// (RegisterPeer) only once E2 exists: until then its re-subscriptions
// fail, so E1's subscription reaches the new process while E2 is there,
// whatever the timing.
func TestEventHandleAcrossOwnerRestart(t *testing.T) {
	const ownerLostAfter = 20 * time.Second // not what may end the wait
	ctx := testCtx(t)
	id := peer.NewID()

	a := newEventMessenger(t,
		velo.Options{ReconnectBackoff: 10 * time.Millisecond, MaxReconnectBackoff: 100 * time.Millisecond},
		events.Options{OwnerLostAfter: ownerLostAfter},
		tcp.New(tcp.Options{}))
	call := func(m *velo.Messenger, handler string, payload []byte) []byte {
		t.Helper()
		out, err := m.Unary(handler).RawPayload(payload).Instance(id).Send(ctx)
		if err != nil {
			t.Fatalf("%s in the owner: %v", handler, err)
		}
		return out
	}
	mkevent := func(m *velo.Messenger) events.Handle {
		t.Helper()
		var h events.Handle
		if err := h.UnmarshalBinary(call(m, "mkevent", nil)); err != nil {
			t.Fatalf("mkevent answer: %v", err)
		}
		return h
	}

	// The first incarnation creates E1; a awaits it.
	owner1 := startChild(t, "-id", id.String())
	if err := a.RegisterPeer(owner1.Info); err != nil {
		t.Fatal(err)
	}
	e1 := mkevent(a)
	aw := awaiter(t, a, e1)
	eventually(t, ctx, "a's subscription in the first owner", func() bool {
		var st events.Stats
		if err := json.Unmarshal(call(a, "eventstats", nil), &st); err != nil {
			t.Fatalf("eventstats answer: %v", err)
		}
		return st.Subscriptions == 1
	})

	// Kill it; the second incarnation, same id, creates E2 in E1's slot.
	owner1.Kill()
	owner2 := startChild(t, "-id", id.String())
	ctl := newMessenger(t, velo.Options{}, tcp.New(tcp.Options{}))
	if err := ctl.RegisterPeer(owner2.Info); err != nil {
		t.Fatal(err)
	}
	e2 := mkevent(ctl)
	t.Logf("E1 %s (first owner), E2 %s (restarted owner)", e1, e2)
	if e2.Index != e1.Index || e2.Generation != e1.Generation {
		t.Fatalf("E2 %s does not reuse E1's slot %s: the test proves nothing", e2, e1)
	}
	select {
	case <-aw.Done():
		t.Fatalf("E1's await ended before a could reach the new owner: %v", aw.Wait(ctx))
	default:
	}

	// a learns where the owner is now; E2 is poisoned with a reason that
	// only E2's outcome carries.
	const e2Reason = "outcome of E2, an event of the restarted owner"
	start := time.Now()
	if err := a.RegisterPeer(owner2.Info); err != nil {
		t.Fatal(err)
	}
	bin2, _ := e2.MarshalBinary()
	call(ctl, "poison", append(bin2, e2Reason...))

	wctx, cancel := context.WithTimeout(ctx, ownerLostAfter/2)
	defer cancel()
	err := aw.Wait(wctx)
	elapsed := time.Since(start)
	t.Logf("awaiting old handle E1 returned after %v: %v", elapsed, err)
	if reason, ok := events.PoisonReason(err); ok {
		t.Fatalf("awaiting E1 reported E2's outcome (poisoned %q) after %v; want ErrOwnerLost", reason, elapsed)
	}
	// Within ownerLostAfter/2, ErrOwnerLost can only be the new process's
	// answer (events.ErrOwnerRestarted), not the owner-lost bound.
	if !errors.Is(err, velo.ErrOwnerLost) {
		t.Fatalf("awaiting E1 after the owner restarted: %v after %v, want ErrOwnerLost", err, elapsed)
	}

	// Asked again, a says the same at once, and E2 itself is unharmed.
	if err := awaiter(t, a, e1).Wait(ctx); !errors.Is(err, velo.ErrOwnerLost) {
		t.Errorf("a second await of E1: %v, want ErrOwnerLost", err)
	}
	err2 := awaiter(t, a, e2).Wait(ctx)
	if reason, _ := events.PoisonReason(err2); reason != e2Reason {
		t.Errorf("awaiting E2: %v, want its poison %q", err2, e2Reason)
	}
	if st := a.Events().Stats(); st.Proxies != 0 {
		t.Errorf("a's stats at the end: %+v", st)
	}
}
