package etcd

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/discoverytest"
	"github.com/velo-messenger/velo/discovery/etcd/internal/etcdtest"
	"github.com/velo-messenger/velo/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTTL is etcd's smallest lease TTL (whole seconds); the embedded
// server's short election timeout lets it grant that.
const testTTL = time.Second

func connect(t *testing.T, es *etcdtest.Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{es.ClientURL.String()},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		// Reconnect quickly after the test restarts the server.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newRegistry(t *testing.T, es *etcdtest.Server) *Registry {
	t.Helper()
	r, err := New(connect(t, es), Options{TTL: testTTL, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	es := etcdtest.Start(t)
	discoverytest.Run(t, discoverytest.Harness{
		New:         func(t *testing.T) discovery.PeerDiscovery { return newRegistry(t, es) },
		TTL:         testTTL,
		Slack:       2 * time.Second, // etcd checks lease expiry every 500 ms
		Abandon:     func(t *testing.T, reg discovery.Registration) { reg.(*registration).abandon() },
		StopServer:  func(t *testing.T) { es.Stop() },
		StartServer: func(t *testing.T) { es.Restart(t) },
	})
}

// TestRevokedLeaseIsReplaced: a lease that disappears under a running
// registration (revoked by an operator, expired in a long outage) is
// replaced by a new one, and the entry comes back.
func TestRevokedLeaseIsReplaced(t *testing.T) {
	es := etcdtest.Start(t)
	ctx := discoverytest.Ctx(t)
	r := newRegistry(t, es)
	info := discoverytest.NewInfo("127.0.0.1:5000")
	reg, err := r.Register(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	g := reg.(*registration)
	old := g.currentLease()
	if _, err := r.c.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := discoverytest.Gone(ctx, r, info.ID); err != nil {
		t.Fatalf("right after the revoke: %v", err)
	}
	took, err := discoverytest.Eventually(5*time.Second, func() error { return discoverytest.Found(ctx, r, info) })
	if err != nil {
		t.Fatalf("entry not restored: %v", err)
	}
	if g.currentLease() == old {
		t.Fatal("still on the revoked lease")
	}
	t.Logf("entry back on a new lease after %v", took.Round(time.Millisecond))
}

// TestRegisterWithServerDown: Register and Lookup fail within the timeout
// instead of waiting for etcd.
func TestRegisterWithServerDown(t *testing.T) {
	es := etcdtest.Start(t)
	r := newRegistry(t, es)
	es.Stop()
	start := time.Now()
	if _, err := r.Register(context.Background(), discoverytest.NewInfo("127.0.0.1:5001")); err == nil {
		t.Fatal("Register with etcd down succeeded")
	}
	if _, err := r.Lookup(context.Background(), peer.NewID()); err == nil || errors.Is(err, discovery.ErrNotFound) {
		t.Fatalf("Lookup with etcd down: %v, want an error other than ErrNotFound", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Register and Lookup took %v to fail", d)
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil || o.Prefix != "/velo/peers/" || o.TTL != 10*time.Second || o.Timeout != 3*time.Second {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	if _, err := (Options{TTL: -1}).withDefaults(); err == nil {
		t.Error("negative TTL accepted")
	}
	for ttl, want := range map[time.Duration]int64{time.Second: 1, 1500 * time.Millisecond: 2, 10 * time.Second: 10, time.Millisecond: 1} {
		if got := (Options{TTL: ttl}).ttlSeconds(); got != want {
			t.Errorf("ttlSeconds(%v) = %d, want %d", ttl, got, want)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New with a nil client succeeded")
	}
}
