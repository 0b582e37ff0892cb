package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/discoverytest"
	"github.com/velo-messenger/velo/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTTL is etcd's smallest lease TTL (whole seconds); the embedded
// server's short election timeout lets it grant that.
const testTTL = time.Second

// etcdServer is an embedded single-member etcd on loopback ports that stay
// the same across restarts, with its data in a test directory.
type etcdServer struct {
	dir                string
	clientURL, peerURL url.URL

	mu sync.Mutex
	e  *embed.Etcd // guarded by mu; nil while stopped
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startServer(t *testing.T) *etcdServer {
	t.Helper()
	es := &etcdServer{
		dir:       t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))},
		peerURL:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))},
	}
	es.start(t)
	t.Cleanup(es.stop)
	return es
}

func (es *etcdServer) start(t *testing.T) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "velo-test"
	cfg.Dir = es.dir
	cfg.ListenClientUrls = []url.URL{es.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{es.clientURL}
	cfg.ListenPeerUrls = []url.URL{es.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{es.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A short election timeout: etcd's smallest lease TTL is 1.5 election
	// timeouts, and a restarted member elects itself sooner.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		e.Close()
		t.Fatal("embedded etcd not ready")
	}
	es.mu.Lock()
	es.e = e
	es.mu.Unlock()
}

func (es *etcdServer) stop() {
	es.mu.Lock()
	e := es.e
	es.e = nil
	es.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func connect(t *testing.T, es *etcdServer) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{es.clientURL.String()},
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

func newRegistry(t *testing.T, es *etcdServer) *Registry {
	t.Helper()
	r, err := New(connect(t, es), Options{TTL: testTTL, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	es := startServer(t)
	discoverytest.Run(t, discoverytest.Harness{
		New:         func(t *testing.T) discovery.PeerDiscovery { return newRegistry(t, es) },
		TTL:         testTTL,
		Slack:       2 * time.Second, // etcd checks lease expiry every 500 ms
		Abandon:     func(t *testing.T, reg discovery.Registration) { reg.(*registration).abandon() },
		StopServer:  func(t *testing.T) { es.stop() },
		StartServer: func(t *testing.T) { es.start(t) },
	})
}

// TestRevokedLeaseIsReplaced: a lease that disappears under a running
// registration (revoked by an operator, expired in a long outage) is
// replaced by a new one, and the entry comes back.
func TestRevokedLeaseIsReplaced(t *testing.T) {
	es := startServer(t)
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
	es := startServer(t)
	r := newRegistry(t, es)
	es.stop()
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
