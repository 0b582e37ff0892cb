package velo_test

import (
	"errors"
	"testing"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
)

func TestEventsRemoteTriggerAndPoison(t *testing.T) {
	a, b := pair(t)
	ctx := testCtx(t)
	ev, err := a.Events().NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	aw, err := b.Events().Awaiter(ev.Handle())
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Wait(ctx); err != nil {
		t.Fatalf("remote await after trigger: %v", err)
	}

	ev2, _ := a.Events().NewEvent()
	aw2, err := b.Events().Awaiter(ev2.Handle())
	if err != nil {
		t.Fatal(err)
	}
	if err := ev2.Poison("disk on fire"); err != nil {
		t.Fatal(err)
	}
	err = aw2.Wait(ctx)
	if !errors.Is(err, velo.ErrEventPoisoned) {
		t.Fatalf("remote await after poison: %v", err)
	}
	if r, ok := events.PoisonReason(err); !ok || r != "disk on fire" {
		t.Fatalf("poison reason = %q, %v", r, ok)
	}
}
