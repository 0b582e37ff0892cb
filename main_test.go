package velo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/soak"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
)

func TestMain(m *testing.M) {
	testchild.Main(map[string]func() int{peerRole: runPeer, soak.Role: soak.ChildMain, workerRole: runWorker})
	goleak.VerifyTestMain(m)
}

// testCtx is a context that ends before the test binary's own timeout, so a
// hung call fails its test instead of the whole run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newMessenger starts a messenger on the given transports (TCP on
// loopback when none) and shuts it down when the test ends.
func newMessenger(t testing.TB, opts velo.Options, ts ...transport.Transport) *velo.Messenger {
	t.Helper()
	b := velo.NewBuilder().Options(opts)
	for _, tr := range ts {
		b.AddTransport(tr)
	}
	return build(t, b)
}

// repeat calls f until stop is closed or f returns false: the loop of a
// load that runs beside an attack or a fault.
func repeat(stop <-chan struct{}, f func() bool) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if !f() {
			return
		}
	}
}

// build starts the messenger b describes (on TCP on loopback unless b
// has a transport) and shuts it down when the test ends.
func build(t testing.TB, b *velo.Builder) *velo.Messenger {
	t.Helper()
	m, err := b.Build(context.Background())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return m
}

// pair starts two messengers over TCP that know each other: a calls b.
func pair(t testing.TB) (a, b *velo.Messenger) {
	t.Helper()
	return pairWith(t, velo.Options{}, func() transport.Transport { return tcp.New(tcp.Options{}) })
}

// memPair is pair over the in-memory transport.
func memPair(t testing.TB) (a, b *velo.Messenger) {
	t.Helper()
	n := mem.NewNetwork()
	return pairWith(t, velo.Options{}, func() transport.Transport { return mem.New(n) })
}

func pairWith(t testing.TB, opts velo.Options, mk func() transport.Transport) (a, b *velo.Messenger) {
	t.Helper()
	a = newMessenger(t, opts, mk())
	b = newMessenger(t, opts, mk())
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterPeer(a.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func mustRegister(t testing.TB, m *velo.Messenger, h *velo.HandlerBuilder) {
	t.Helper()
	if err := m.RegisterHandler(h.Build()); err != nil {
		t.Fatalf("RegisterHandler: %v", err)
	}
}

// mib formats a byte count in MiB, for logs and failures.
func mib(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
