package actor_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/velo-messenger/velo/actor"
)

// here records whether a handler ran while the test goroutine was inside
// TellHere (the actor's own goroutines would run it later).
type here struct {
	inside atomic.Bool // set by the test around TellHere
	ranIn  atomic.Int32
	ranOut atomic.Int32
}

func (h *here) ran() {
	if h.inside.Load() {
		h.ranIn.Add(1)
	} else {
		h.ranOut.Add(1)
	}
}

// TestTellHereRunsOnTheCaller: an idle uncapped Spawn actor runs the
// message before TellHere returns; a panic is recovered and the handler
// restarted as for any message.
func TestTellHereRunsOnTheCaller(t *testing.T) {
	var h here
	var panics atomic.Int32
	a := mustNew(t, actor.Config[int, int]{
		Mode: actor.Spawn,
		Factory: stateless(func(_ context.Context, n int) {
			if n == 99 {
				panic("boom")
			}
			h.ran()
		}),
		OnPanic: func(int, *actor.PanicError) { panics.Add(1) },
		Restart: actor.DefaultRestartPolicy(),
	})
	for i := range 10 {
		h.inside.Store(true)
		ran, err := a.TellHere(context.Background(), 0, i)
		h.inside.Store(false)
		if err != nil || !ran {
			t.Fatalf("TellHere(%d) = %v, %v; want it run here", i, ran, err)
		}
	}
	if in, out := h.ranIn.Load(), h.ranOut.Load(); in != 10 || out != 0 {
		t.Fatalf("%d messages ran inside TellHere, %d elsewhere; want 10, 0", in, out)
	}
	if ran, err := a.TellHere(context.Background(), 0, 99); err != nil || !ran {
		t.Fatalf("TellHere(panic) = %v, %v", ran, err)
	}
	if panics.Load() != 1 {
		t.Fatalf("OnPanic called %d times, want 1", panics.Load())
	}
	if ran, err := a.TellHere(context.Background(), 0, 1); err != nil || !ran {
		t.Fatalf("TellHere after the panic = %v, %v", ran, err)
	}
	if a.Depth() != 0 {
		t.Fatalf("depth %d after the messages ran, want 0", a.Depth())
	}
}

// TestTellHereInOtherModes: in the other modes TellHere is Tell.
func TestTellHereInOtherModes(t *testing.T) {
	for name, cfg := range map[string]actor.Config[int, int]{
		"inline":  {Mode: actor.Inline},
		"ordered": {Mode: actor.Ordered},
		"capped":  {Mode: actor.Spawn, MaxConcurrency: 2},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Factory = stateless(func(context.Context, int) {})
			a := mustNew(t, cfg)
			ran, err := a.TellHere(context.Background(), 0, 1)
			if err != nil || ran {
				t.Fatalf("TellHere = %v, %v; want Tell's nil and not run here", ran, err)
			}
		})
	}
}
