package velo_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/peer"
)

// peerRole is the testchild role of a peer process (runPeer), so that
// fault tests can kill a real process.
const peerRole = "peer"

// startChild runs the test binary as a peer process (runPeer) with args
// and returns once it has printed its peer.Info; it is stopped when the
// test ends. "-id HEX" makes it take that peer.ID instead of a random one,
// so that a test can restart "the same" instance.
func startChild(t *testing.T, args ...string) *testchild.Child {
	t.Helper()
	return testchild.Start(t, peerRole, testchild.Options{Args: args})
}

// runPeer starts a messenger with a few handlers, prints its peer.Info
// (testchild.PrintInfo), and serves until the test stops it.
//
// Handlers: "echo" (unary, returns its payload), "block" (unary, waits for
// its ctx to end: a call to it is in flight until the process dies), and
// the event handlers of childEvents ("mkevent", "trigger", "poison",
// "eventstats"), and the memory handlers of hostile_memory_test.go
// ("memstats", "tags").
func runPeer() int {
	fs := flag.NewFlagSet(peerRole, flag.ContinueOnError)
	idFlag := fs.String("id", "", "the instance's peer.ID, hexadecimal (default: random)")
	if err := fs.Parse(testchild.Args()); err != nil {
		return 2
	}
	ctx := context.Background()
	bld := velo.NewBuilder()
	if *idFlag != "" {
		id, err := peer.Parse(*idFlag)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: -id:", err)
			return 2
		}
		bld.InstanceID(id)
	}
	m, err := bld.Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	m.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	m.RegisterHandler(velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}).Build())
	m.RegisterHandler(streamToHandler(m).Build())
	m.RegisterHandler(streamFromHandler(m).Build())
	ce := &childEvents{m: m.Events(), live: make(map[events.Handle]*events.Event)}
	for _, h := range ce.handlers() {
		m.RegisterHandler(h.Build())
	}
	for _, h := range memoryHandlers() {
		m.RegisterHandler(h.Build())
	}
	if err := testchild.PrintInfo(m.PeerInfo()); err != nil {
		return 2
	}
	testchild.WaitStop()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.Shutdown(sctx)
	return 0
}

// childEvents lets a test own events in the child process:
//
//   - "mkevent" creates an event and returns its handle's binary form;
//   - "trigger" (payload: a binary handle) triggers it;
//   - "poison" (payload: a binary handle, then the reason) poisons it;
//   - "eventstats" returns the child manager's events.Stats as JSON.
//
// The child keeps every event it created until it completes it: an Event
// dropped by the child would be poisoned by its cleanup, and a test that
// kills the child wants its awaiters to see the owner lost, not a poison.
type childEvents struct {
	m    *events.Manager
	mu   sync.Mutex
	live map[events.Handle]*events.Event // created, not completed by a handler
}

func (ce *childEvents) handlers() []*velo.HandlerBuilder {
	return []*velo.HandlerBuilder{
		velo.UnaryHandler("mkevent", func(context.Context, *velo.Context) ([]byte, error) {
			ev, err := ce.m.NewEvent()
			if err != nil {
				return nil, err
			}
			ce.mu.Lock()
			ce.live[ev.Handle()] = ev
			ce.mu.Unlock()
			return ev.Handle().MarshalBinary()
		}),
		velo.UnaryHandler("trigger", func(_ context.Context, c *velo.Context) ([]byte, error) {
			ev, err := ce.take(c.Payload)
			if err != nil {
				return nil, err
			}
			return nil, ev.Trigger()
		}),
		velo.UnaryHandler("poison", func(_ context.Context, c *velo.Context) ([]byte, error) {
			const n = events.HandleSize
			if len(c.Payload) < n {
				return nil, fmt.Errorf("poison: payload of %d bytes, want a handle and a reason", len(c.Payload))
			}
			ev, err := ce.take(c.Payload[:n])
			if err != nil {
				return nil, err
			}
			return nil, ev.Poison(string(c.Payload[n:]))
		}),
		velo.UnaryHandler("eventstats", func(context.Context, *velo.Context) ([]byte, error) {
			return json.Marshal(ce.m.Stats())
		}),
	}
}

// take removes the event whose binary handle is b from the live set.
func (ce *childEvents) take(b []byte) (*events.Event, error) {
	var h events.Handle
	if err := h.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	ce.mu.Lock()
	defer ce.mu.Unlock()
	ev := ce.live[h]
	if ev == nil {
		return nil, fmt.Errorf("no live event %s in the child", h)
	}
	delete(ce.live, h)
	return ev, nil
}

func TestChildEcho(t *testing.T) {
	c := startChild(t)
	m := newMessenger(t, velo.Options{})
	if err := m.RegisterPeer(c.Info); err != nil {
		t.Fatal(err)
	}
	got, err := m.Unary("echo").RawPayload([]byte("hi")).Instance(c.Info.ID).Send(testCtx(t))
	if err != nil || string(got) != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}
