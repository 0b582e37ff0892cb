package discoverytest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// The scenarios below run velo messengers that find each other through
// the backend under test, with no RegisterPeer.

// recorder passes a backend through and keeps the registrations made
// through it, so that a test can kill one.
type recorder struct {
	discovery.PeerDiscovery
	mu   sync.Mutex
	regs []*recordedReg // guarded by mu
}

type recordedReg struct {
	discovery.Registration
	dead atomic.Bool
}

func (r *recorder) Register(ctx context.Context, info peer.Info) (discovery.Registration, error) {
	reg, err := r.PeerDiscovery.Register(ctx, info)
	if err != nil {
		return nil, err
	}
	rr := &recordedReg{Registration: reg}
	r.mu.Lock()
	r.regs = append(r.regs, rr)
	r.mu.Unlock()
	return rr, nil
}

// Close withdraws the registration unless it was killed: a dead process
// withdraws nothing.
func (r *recordedReg) Close(ctx context.Context) error {
	if r.dead.Load() {
		return nil
	}
	return r.Registration.Close(ctx)
}

// instance is a messenger under test and the registry client it uses.
type instance struct {
	m   *velo.Messenger
	rec *recorder
}

// whoami is the handler every test instance serves: it answers its
// instance id and a tag that tells restarted instances apart.
const whoami = "whoami"

func startInstance(t *testing.T, ctx context.Context, h *Harness, id peer.ID, tag string) *instance {
	t.Helper()
	rec := &recorder{PeerDiscovery: h.New(t)}
	if id.IsZero() {
		id = peer.NewID()
	}
	self := id.String() + " " + tag
	// Handle: the instance is published with its handler, never without.
	b := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{Listen: "127.0.0.1:0"})).Discovery(rec).InstanceID(id).
		Handle(velo.UnaryHandler(whoami, func(context.Context, *velo.Context) ([]byte, error) {
			return []byte(self), nil
		}).Inline().Build())
	m, err := b.Build(ctx)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { shutdown(t, m) })
	return &instance{m: m, rec: rec}
}

func shutdown(t *testing.T, m *velo.Messenger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func ask(ctx context.Context, from *velo.Messenger, to peer.ID) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := from.Unary(whoami).Instance(to).Send(cctx)
	return string(b), err
}

func testMessengers(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	var ins [3]*instance
	for i := range ins {
		ins[i] = startInstance(t, ctx, h, peer.ID{}, "")
	}
	for i, from := range ins {
		for j, to := range ins {
			if i == j {
				continue
			}
			id := to.m.InstanceID()
			got, err := ask(ctx, from.m, id)
			if err != nil || got != id.String()+" " {
				t.Errorf("instance %d asked %d: %q, %v", i, j, got, err)
			}
		}
	}
}

func testMessengerShutdown(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a := startInstance(t, ctx, h, peer.ID{}, "")
	b := startInstance(t, ctx, h, peer.ID{}, "")
	probe := h.New(t)
	id := b.m.InstanceID()
	if _, err := ask(ctx, a.m, id); err != nil {
		t.Fatalf("before shutdown: %v", err)
	}
	shutdown(t, b.m)
	if err := Gone(ctx, probe, id); err != nil {
		t.Fatalf("right after Shutdown: %v", err)
	}
	// a notices the connection end (goaway), asks discovery again and is
	// told the instance is unknown. A send racing the goaway fails as
	// shutting down or lost instead.
	_, err := Eventually(5*time.Second, func() error {
		_, err := ask(ctx, a.m, id)
		switch {
		case errors.Is(err, velo.ErrPeerUnknown):
			return nil
		case err == nil:
			return errors.New("an instance that shut down answered")
		case errors.Is(err, velo.ErrShuttingDown), errors.Is(err, velo.ErrPeerLost):
			return err
		}
		t.Fatalf("send to an instance that shut down: %v, want ErrPeerUnknown", err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testMessengerKilled(t *testing.T, h *Harness) {
	if h.Abandon == nil {
		t.Skip("the backend tests crashes its own way")
	}
	ctx := Ctx(t)
	a := startInstance(t, ctx, h, peer.ID{}, "")
	b := startInstance(t, ctx, h, peer.ID{}, "")
	probe := h.New(t)
	id := b.m.InstanceID()
	if _, err := ask(ctx, a.m, id); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	// The kill: the keepalive stops, nothing is withdrawn, the listener
	// goes.
	b.rec.mu.Lock()
	reg := b.rec.regs[0]
	b.rec.mu.Unlock()
	reg.dead.Store(true)
	h.Abandon(t, reg.Registration)
	shutdown(t, b.m)
	killed := time.Now()
	took, err := Eventually(h.TTL+h.slack(), func() error { return Gone(ctx, probe, id) })
	if err != nil {
		t.Fatalf("killed instance: %v", err)
	}
	t.Logf("killed instance gone from lookups after %v (TTL %v)", took.Round(time.Millisecond), h.TTL)
	if _, err := ask(ctx, a.m, id); !errors.Is(err, velo.ErrPeerUnknown) {
		t.Fatalf("send %v after the kill: %v, want ErrPeerUnknown", time.Since(killed).Round(time.Millisecond), err)
	}
}

func testMessengerRestart(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a := startInstance(t, ctx, h, peer.ID{}, "")
	b1 := startInstance(t, ctx, h, peer.ID{}, "first")
	id := b1.m.InstanceID()
	if got, err := ask(ctx, a.m, id); err != nil || got != id.String()+" first" {
		t.Fatalf("before the restart: %q, %v", got, err)
	}
	oldAddr, _ := b1.m.PeerInfo().Address("tcp")
	shutdown(t, b1.m)
	b2 := startInstance(t, ctx, h, id, "second")
	if addr, _ := b2.m.PeerInfo().Address("tcp"); addr == oldAddr {
		t.Skipf("the restarted instance got the same address %s", addr)
	}
	// The next send reaches the new address: the old connection ended
	// (goaway), which marks the discovered peer stale, so the send asks
	// discovery again. A send that races the goaway still picks the old
	// connection and fails with ErrShuttingDown or ErrPeerLost; the one
	// after it reaches the new address.
	got, err := ask(ctx, a.m, id)
	if errors.Is(err, velo.ErrShuttingDown) || errors.Is(err, velo.ErrPeerLost) {
		t.Logf("first send raced the old connection's end: %v", err)
		got, err = ask(ctx, a.m, id)
	}
	if err != nil || got != id.String()+" second" {
		t.Fatalf("after the restart on a new port: %q, %v", got, err)
	}
}

// testDialerRestart: b connected to a first, so a learned b's address from
// b's hello, not from discovery. When b restarts elsewhere, a must still
// ask discovery again.
func testDialerRestart(t *testing.T, h *Harness) {
	ctx := Ctx(t)
	a := startInstance(t, ctx, h, peer.ID{}, "")
	b1 := startInstance(t, ctx, h, peer.ID{}, "first")
	id := b1.m.InstanceID()
	if _, err := ask(ctx, b1.m, a.m.InstanceID()); err != nil {
		t.Fatalf("b→a: %v", err)
	}
	if got, err := ask(ctx, a.m, id); err != nil || got != id.String()+" first" {
		t.Fatalf("a→b over b's connection: %q, %v", got, err)
	}
	shutdown(t, b1.m)
	startInstance(t, ctx, h, id, "second")
	got, err := ask(ctx, a.m, id)
	if errors.Is(err, velo.ErrShuttingDown) || errors.Is(err, velo.ErrPeerLost) {
		got, err = ask(ctx, a.m, id)
	}
	if err != nil || got != id.String()+" second" {
		t.Fatalf("after the restart on a new port: %q, %v", got, err)
	}
}

func testServerRestart(t *testing.T, h *Harness) {
	if h.StopServer == nil || h.StartServer == nil {
		t.Skip("the backend has no server to restart")
	}
	ctx := Ctx(t)
	a := startInstance(t, ctx, h, peer.ID{}, "")
	b := startInstance(t, ctx, h, peer.ID{}, "")
	probe := h.New(t)
	w := startWatch(t, ctx, probe)
	ai, bi := a.m.PeerInfo(), b.m.PeerInfo()
	if err := w.waitFor(5*time.Second, "both instances", func(m discovery.Membership) bool {
		return has(ai)(m) && has(bi)(m)
	}); err != nil {
		t.Fatal(err)
	}

	stopping := time.Now()
	h.StopServer(t)
	t.Logf("server stopped in %v", time.Since(stopping).Round(time.Millisecond))
	// While the server is away, lookups fail fast with an error that is
	// not ErrNotFound, so the messenger keeps the address it had.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	asked := time.Now()
	_, err := probe.Lookup(lctx, bi.ID)
	cancel()
	if err == nil || errors.Is(err, discovery.ErrNotFound) {
		t.Errorf("Lookup with the server down: %v, want another error", err)
	}
	t.Logf("lookup with the server down failed in %v: %v", time.Since(asked).Round(time.Millisecond), err)
	// Longer than the TTL: whatever the server kept has expired by the
	// time it is back, so only the registrations' refreshes bring the
	// entries back.
	time.Sleep(h.TTL + h.TTL/2)
	starting := time.Now()
	h.StartServer(t)
	started := time.Now()
	t.Logf("server started in %v", started.Sub(starting).Round(time.Millisecond))

	for _, info := range []peer.Info{ai, bi} {
		if _, err := Eventually(h.recover(), func() error { return Found(ctx, probe, info) }); err != nil {
			t.Fatalf("registration not restored after the server came back: %v", err)
		}
	}
	t.Logf("registrations found again %v after the server restarted", time.Since(started).Round(time.Millisecond))
	// New registrations work, the old watch reports them, and the
	// messengers reach each other (through the connection they had or a
	// new one).
	c := startInstance(t, ctx, h, peer.ID{}, "")
	ci := c.m.PeerInfo()
	if err := Found(ctx, probe, ci); err != nil {
		t.Fatalf("new registration after the restart: %v", err)
	}
	if err := w.waitFor(h.recover(), "put of a registration made after the restart", has(ci)); err != nil {
		t.Fatal(err)
	}
	t.Logf("the watch reported a new registration %v after the server restarted", time.Since(started).Round(time.Millisecond))
	for _, to := range []*instance{b, c} {
		if _, err := ask(ctx, a.m, to.m.InstanceID()); err != nil {
			t.Fatalf("send after the restart: %v", err)
		}
	}
	shutdown(t, c.m)
	if err := w.waitFor(5*time.Second, "delete after a shutdown following the restart", lacks(ci.ID)); err != nil {
		t.Fatal(err)
	}
}
