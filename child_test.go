package velo_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/peer"
)

// childEnv makes the test binary run as a peer process (runChild) instead
// of running tests, so that fault tests can kill a real process.
const childEnv = "VELO_TEST_CHILD"

// childIDEnv, if set, is the peer.ID (hexadecimal) the child takes instead
// of a random one, so that a test can restart "the same" instance.
const childIDEnv = "VELO_TEST_CHILD_ID"

// runChild starts a messenger with a few handlers, prints its peer.Info as
// one JSON line on stdout, and serves until it gets SIGTERM or its stdin
// closes (so that it never outlives the test that started it).
//
// Handlers: "echo" (unary, returns its payload), "block" (unary, waits for
// its ctx to end: a call to it is in flight until the process dies), and
// the event handlers of childEvents ("mkevent", "trigger", "poison",
// "eventstats"), and the memory handlers of hostile_memory_test.go
// ("memstats", "tags").
func runChild() {
	ctx := context.Background()
	bld := velo.NewBuilder()
	if s := os.Getenv(childIDEnv); s != "" {
		id, err := peer.Parse(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", childIDEnv, err)
			os.Exit(2)
		}
		bld.InstanceID(id)
	}
	m, err := bld.Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	m.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	m.RegisterHandler(velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}).Build())
	ce := &childEvents{m: m.Events(), live: make(map[events.Handle]*events.Event)}
	for _, h := range ce.handlers() {
		m.RegisterHandler(h.Build())
	}
	for _, h := range memoryHandlers() {
		m.RegisterHandler(h.Build())
	}
	b, _ := json.Marshal(m.PeerInfo())
	fmt.Println(string(b))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(eof)
	}()
	select {
	case <-sig:
	case <-eof:
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.Shutdown(sctx)
	os.Exit(0)
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

// child is a peer process started by a test.
type child struct {
	cmd  *exec.Cmd
	info peer.Info
}

// startChild runs the test binary as a peer process and returns its
// peer.Info. The process is killed when the test ends.
func startChild(t *testing.T) *child {
	t.Helper()
	return startChildEnv(t)
}

// startChildAs is startChild for a child whose instance id is id.
func startChildAs(t *testing.T, id peer.ID) *child {
	t.Helper()
	return startChildEnv(t, childIDEnv+"="+id.String())
}

// startChildEnv is startChild with env added to the child's environment.
func startChildEnv(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child gave no peer info: %v", err)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &c.info); err != nil {
		t.Fatalf("child peer info %q: %v", line, err)
	}
	return c
}

// kill ends the child at once, as a crash would.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
}

func TestChildEcho(t *testing.T) {
	c := startChild(t)
	m := newMessenger(t, velo.Options{})
	if err := m.RegisterPeer(c.info); err != nil {
		t.Fatal(err)
	}
	got, err := m.Unary("echo").RawPayload([]byte("hi")).Instance(c.info.ID).Send(testCtx(t))
	if err != nil || string(got) != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}
