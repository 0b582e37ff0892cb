// Package discoverytest is the conformance suite of discovery backends:
// every backend runs the same scenarios, first against the PeerDiscovery
// interface alone, then with velo messengers that find each other through
// it. A new backend gets its tests by filling in a Harness and calling Run
// from its own test.
package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
)

// Harness says how to reach the backend under test and which fault
// scenarios it supports.
type Harness struct {
	// New returns a client of the registry under test. Each call returns
	// a new client of the same registry, as separate processes would
	// have; New registers its own cleanup (t.Cleanup) for what it opens.
	New func(t *testing.T) discovery.PeerDiscovery
	// TTL is the time to live the clients were configured with.
	TTL time.Duration
	// Slack is how much longer than TTL an abandoned registration may
	// stay visible (refresh period, polling, server expiry granularity).
	// Zero: 1 s.
	Slack time.Duration
	// Abandon stops reg's keepalive without withdrawing it, as if its
	// process had died; reg was returned by a client from New. nil skips
	// the crash scenarios (a backend may test them its own way, with a
	// process killed by SIGKILL).
	Abandon func(t *testing.T, reg discovery.Registration)
	// StopServer stops the backend's server; StartServer starts it again
	// at the same address. nil skips the server-restart scenario.
	StopServer, StartServer func(t *testing.T)
	// Recover bounds how long after StartServer registrations must be
	// back and lookups answer again. Zero: 15 s.
	Recover time.Duration
}

func (h *Harness) slack() time.Duration {
	if h.Slack > 0 {
		return h.Slack
	}
	return time.Second
}

func (h *Harness) recover() time.Duration {
	if h.Recover > 0 {
		return h.Recover
	}
	return 15 * time.Second
}

// Run runs every scenario the harness supports, as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.TTL <= 0 {
		t.Fatal("discoverytest: Harness needs New and TTL")
	}
	t.Run("RegisterLookup", func(t *testing.T) { testRegisterLookup(t, &h) })
	t.Run("CloseWithdrawsAtOnce", func(t *testing.T) { testCloseWithdraws(t, &h) })
	t.Run("NewerRegistrationWins", func(t *testing.T) { testNewerWins(t, &h) })
	t.Run("RefreshKeepsAlive", func(t *testing.T) { testRefresh(t, &h) })
	t.Run("AbandonedExpires", func(t *testing.T) { testAbandoned(t, &h) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, &h) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, &h) })
	t.Run("List", func(t *testing.T) { testList(t, &h) })
	t.Run("MessengersReachEachOther", func(t *testing.T) { testMessengers(t, &h) })
	t.Run("MessengerShutdownWithdraws", func(t *testing.T) { testMessengerShutdown(t, &h) })
	t.Run("MessengerKilledExpires", func(t *testing.T) { testMessengerKilled(t, &h) })
	t.Run("MessengerRestartedOnNewPort", func(t *testing.T) { testMessengerRestart(t, &h) })
	t.Run("MessengerThatDialedUsRestarted", func(t *testing.T) { testDialerRestart(t, &h) })
	t.Run("ServerRestart", func(t *testing.T) { testServerRestart(t, &h) })
}

// Ctx returns a context that ends before the test binary's timeout, so a
// hung call fails its test instead of the whole run.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// NewInfo returns an Info with a fresh id and one made-up tcp address.
func NewInfo(addr string) peer.Info {
	return peer.Info{ID: peer.NewID(), Addresses: map[string]string{"tcp": addr}}
}

// Eventually calls f every 20 ms until it returns nil or within has
// passed, and returns how long that took or f's last error.
func Eventually(within time.Duration, f func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > within {
			return time.Since(start), fmt.Errorf("still after %v: %w", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Found returns nil if d finds info (same addresses, service and
// handlers), else why not.
func Found(ctx context.Context, d discovery.PeerDiscovery, info peer.Info) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := d.Lookup(lctx, info.ID)
	if err != nil {
		return fmt.Errorf("Lookup(%s): %w", info.ID.Short(), err)
	}
	if !got.Equal(info) {
		return fmt.Errorf("Lookup(%s) = %v, want %v", info.ID.Short(), got, info)
	}
	return nil
}

// Gone returns nil if d answers ErrNotFound for id, else what it answered.
func Gone(ctx context.Context, d discovery.PeerDiscovery, id peer.ID) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := d.Lookup(lctx, id)
	if errors.Is(err, discovery.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("Lookup(%s): %w, want ErrNotFound", id.Short(), err)
	}
	return fmt.Errorf("Lookup(%s) = %v, want ErrNotFound", id.Short(), got)
}

func register(t *testing.T, ctx context.Context, d discovery.PeerDiscovery, info peer.Info) discovery.Registration {
	t.Helper()
	reg, err := d.Register(ctx, info)
	if err != nil {
		t.Fatalf("Register(%v): %v", info, err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	return reg
}

func testRegisterLookup(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	info := NewInfo("127.0.0.1:1001")
	info.Addresses["uds"] = "/tmp/velo-test.sock"
	register(t, ctx, a, info)
	for name, d := range map[string]discovery.PeerDiscovery{"same client": a, "other client": b} {
		if err := Found(ctx, d, info); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := Gone(ctx, b, peer.NewID()); err != nil {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := a.Register(ctx, peer.Info{ID: peer.NewID()}); err == nil {
		t.Error("Register of an Info without addresses succeeded")
	}
	if _, err := a.Register(ctx, peer.Info{Addresses: map[string]string{"tcp": "x:1"}}); err == nil {
		t.Error("Register of an Info with a zero id succeeded")
	}
}

func testCloseWithdraws(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	info := NewInfo("127.0.0.1:1002")
	reg := register(t, ctx, a, info)
	if err := Found(ctx, b, info); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// At once: no waiting for a TTL.
	if err := Gone(ctx, b, info.ID); err != nil {
		t.Fatalf("right after Close: %v", err)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Nothing brings it back: the keepalive stopped with Close.
	time.Sleep(h.TTL / 2)
	if err := Gone(ctx, b, info.ID); err != nil {
		t.Fatalf("after Close and a while: %v", err)
	}
}

func testNewerWins(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b, c := h.New(t), h.New(t), h.New(t)
	old := NewInfo("127.0.0.1:1003")
	now := peer.Info{ID: old.ID, Addresses: map[string]string{"tcp": "127.0.0.1:1004"}}
	r1 := register(t, ctx, a, old)
	r2 := register(t, ctx, b, now)
	if err := Found(ctx, c, now); err != nil {
		t.Fatalf("after the second registration: %v", err)
	}
	// The old registration closing (an instance shutting down after its
	// successor started) leaves the new one in place.
	if err := r1.Close(ctx); err != nil {
		t.Fatalf("Close of the older: %v", err)
	}
	if err := Found(ctx, c, now); err != nil {
		t.Fatalf("after the older closed: %v", err)
	}
	if err := r2.Close(ctx); err != nil {
		t.Fatalf("Close of the newer: %v", err)
	}
	if err := Gone(ctx, c, now.ID); err != nil {
		t.Fatalf("after both closed: %v", err)
	}
}

func testRefresh(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	info := NewInfo("127.0.0.1:1005")
	register(t, ctx, a, info)
	deadline := time.Now().Add(2*h.TTL + h.slack())
	for time.Now().Before(deadline) {
		if err := Found(ctx, b, info); err != nil {
			t.Fatalf("a live registration expired: %v", err)
		}
		time.Sleep(h.TTL / 4)
	}
}

func testAbandoned(t *testing.T, h *Harness) {
	if h.Abandon == nil {
		t.Skip("the backend tests crashes its own way")
	}
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	info := NewInfo("127.0.0.1:1006")
	reg := register(t, ctx, a, info)
	h.Abandon(t, reg)
	if err := Found(ctx, b, info); err != nil {
		t.Fatalf("right after the keepalive stopped: %v", err)
	}
	took, err := Eventually(h.TTL+h.slack(), func() error { return Gone(ctx, b, info.ID) })
	if err != nil {
		t.Fatalf("abandoned registration: %v", err)
	}
	t.Logf("abandoned registration gone after %v (TTL %v)", took.Round(time.Millisecond), h.TTL)
}

// watchState applies what a Watch reports, for tests that wait for a
// state.
type watchState struct {
	ch    <-chan discovery.Change
	known discovery.Membership
	log   []discovery.Change
}

func startWatch(t *testing.T, ctx context.Context, d discovery.PeerDiscovery) *watchState {
	t.Helper()
	w, ok := d.(discovery.Watcher)
	if !ok {
		t.Skip("the backend does not implement discovery.Watcher")
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, err := w.Watch(wctx)
	if err != nil {
		cancel()
		t.Fatalf("Watch: %v", err)
	}
	// The channel closes once the watch goroutine returned: drain it so
	// that goleak never sees it.
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	return &watchState{ch: ch, known: make(discovery.Membership)}
}

// waitFor reads changes until cond holds or within passes.
func (w *watchState) waitFor(within time.Duration, what string, cond func(discovery.Membership) bool) error {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for !cond(w.known) {
		select {
		case c, ok := <-w.ch:
			if !ok {
				return fmt.Errorf("watch ended while waiting for %s", what)
			}
			w.log = append(w.log, c)
			switch c.Kind {
			case discovery.Put:
				w.known[c.Info.ID] = c.Info.Clone()
			case discovery.Delete:
				delete(w.known, c.Info.ID)
			default:
				return fmt.Errorf("watch sent a change of kind %v", c.Kind)
			}
		case <-timer.C:
			return fmt.Errorf("no %s within %v (changes seen: %v)", what, within, w.log)
		}
	}
	return nil
}

func has(info peer.Info) func(discovery.Membership) bool {
	return func(m discovery.Membership) bool {
		got, ok := m[info.ID]
		return ok && got.Equal(info)
	}
}

func lacks(id peer.ID) func(discovery.Membership) bool {
	return func(m discovery.Membership) bool { _, ok := m[id]; return !ok }
}

func testWatch(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	before := NewInfo("127.0.0.1:1007")
	register(t, ctx, a, before)
	w := startWatch(t, ctx, b)
	if err := w.waitFor(5*time.Second, "instance registered before the watch", has(before)); err != nil {
		t.Fatal(err)
	}
	after := NewInfo("127.0.0.1:1008")
	reg := register(t, ctx, a, after)
	if err := w.waitFor(5*time.Second, "put of a new registration", has(after)); err != nil {
		t.Fatal(err)
	}
	moved := peer.Info{ID: after.ID, Addresses: map[string]string{"tcp": "127.0.0.1:1009"}}
	reg2 := register(t, ctx, a, moved)
	if err := w.waitFor(5*time.Second, "put of new addresses", has(moved)); err != nil {
		t.Fatal(err)
	}
	reg.Close(ctx)
	reg2.Close(ctx)
	if err := w.waitFor(5*time.Second, "delete after Close", lacks(after.ID)); err != nil {
		t.Fatal(err)
	}
	if h.Abandon == nil {
		return
	}
	dead := NewInfo("127.0.0.1:1010")
	reg3 := register(t, ctx, a, dead)
	if err := w.waitFor(5*time.Second, "put before the crash", has(dead)); err != nil {
		t.Fatal(err)
	}
	h.Abandon(t, reg3)
	if err := w.waitFor(h.TTL+h.slack()+time.Second, "delete of an expired registration", lacks(dead.ID)); err != nil {
		t.Fatal(err)
	}
}

// testUpdate: Update replaces what a registration publishes, for lookups
// and watches, keeps it through refreshes, never overwrites a newer
// registration, and fails after Close.
func testUpdate(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	info := NewInfo("127.0.0.1:1011")
	reg := register(t, ctx, a, info)
	var w *watchState
	if _, ok := b.(discovery.Watcher); ok {
		w = startWatch(t, ctx, b)
	}
	updated := info.Clone()
	updated.Service, updated.Handlers = "jobs", []string{"resize", "thumbnail"}
	if err := reg.Update(ctx, updated); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := Found(ctx, b, updated); err != nil {
		t.Fatalf("after Update: %v", err)
	}
	if w != nil {
		if err := w.waitFor(5*time.Second, "put of the updated info", has(updated)); err != nil {
			t.Fatal(err)
		}
	}
	wrong := updated.Clone()
	wrong.ID = peer.NewID()
	if err := reg.Update(ctx, wrong); err == nil {
		t.Error("Update with another instance's id succeeded")
	}
	unsorted := updated.Clone()
	unsorted.Handlers = []string{"b", "a"}
	if err := reg.Update(ctx, unsorted); err == nil {
		t.Error("Update with unsorted handlers succeeded")
	}
	// Refreshes publish the updated info, not the registered one.
	time.Sleep(h.TTL + h.slack())
	if err := Found(ctx, b, updated); err != nil {
		t.Fatalf("a TTL after Update: %v", err)
	}
	// An older registration's Update leaves a newer registration alone.
	newer := updated.Clone()
	newer.Addresses = map[string]string{"tcp": "127.0.0.1:1012"}
	register(t, ctx, a, newer)
	stale := updated.Clone()
	stale.Handlers = []string{"stale"}
	reg.Update(ctx, stale) // superseded: an error or a no-op, never a write
	if err := Found(ctx, b, newer); err != nil {
		t.Fatalf("after an older registration's Update: %v", err)
	}
	reg.Close(ctx)
	if err := reg.Update(ctx, updated); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Update after Close = %v, want ErrClosed", err)
	}
}

// testList: List gives every registration, with its service and
// handlers, and not one closed.
func testList(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a, b := h.New(t), h.New(t)
	l, ok := b.(discovery.Lister)
	if !ok {
		t.Skip("the backend does not implement discovery.Lister")
	}
	one, two := NewInfo("127.0.0.1:1013"), NewInfo("127.0.0.1:1014")
	two.Service, two.Handlers = "jobs", []string{"run"}
	register(t, ctx, a, one)
	reg := register(t, ctx, a, two)
	listed := func() map[peer.ID]peer.Info {
		all, err := l.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		m := make(map[peer.ID]peer.Info)
		for _, info := range all {
			m[info.ID] = info
		}
		return m
	}
	got := listed()
	for _, want := range []peer.Info{one, two} {
		if !got[want.ID].Equal(want) {
			t.Errorf("List has %v for %s, want %v (handlers %v)", got[want.ID], want.ID.Short(), want, want.Handlers)
		}
	}
	reg.Close(ctx)
	if _, ok := listed()[two.ID]; ok {
		t.Error("List still has a closed registration")
	}
}
