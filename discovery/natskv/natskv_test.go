package natskv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/discoverytest"
	"github.com/velo-messenger/velo/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTTL = time.Second

// natsServer is an embedded nats-server with JetStream on a loopback port
// that stays the same across restarts.
type natsServer struct {
	mu   sync.Mutex
	s    *server.Server // guarded by mu; nil while stopped
	port int
}

func startServer(t *testing.T) *natsServer {
	t.Helper()
	ns := &natsServer{port: -1}
	ns.start(t)
	t.Cleanup(func() { ns.stop() })
	return ns
}

// start runs a server with a fresh store: after a restart the bucket and
// every entry are gone, as with a server that lost its disk, so what is
// found afterwards was written again by the registrations.
func (ns *natsServer) start(t *testing.T) {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      ns.port,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	ns.mu.Lock()
	ns.s = s
	ns.port = s.Addr().(*net.TCPAddr).Port
	ns.mu.Unlock()
}

func (ns *natsServer) stop() {
	ns.mu.Lock()
	s := ns.s
	ns.s = nil
	ns.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

// connect opens a client that reconnects for ever, quickly, as a
// production client of this backend should (apart from the pace).
func connect(t *testing.T, ns *natsServer) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newRegistry(t *testing.T, ns *natsServer, opts Options) *Registry {
	t.Helper()
	if opts.TTL == 0 {
		opts.TTL = testTTL
	}
	opts.Timeout = time.Second
	r, err := New(connect(t, ns), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	ns := startServer(t)
	discoverytest.Run(t, discoverytest.Harness{
		New:     func(t *testing.T) discovery.PeerDiscovery { return newRegistry(t, ns, Options{}) },
		TTL:     testTTL,
		Abandon: func(t *testing.T, reg discovery.Registration) { reg.(*registration).stop() },
		StopServer: func(t *testing.T) {
			ns.stop()
		},
		StartServer: func(t *testing.T) {
			ns.start(t)
		},
	})
}

// TestExistingBucketTTL: a registry whose TTL is longer than that of the
// bucket another instance created refreshes often enough for the bucket's.
func TestExistingBucketTTL(t *testing.T) {
	ns := startServer(t)
	ctx := discoverytest.Ctx(t)
	short := newRegistry(t, ns, Options{Bucket: "short", TTL: testTTL})
	if _, err := short.bucket(ctx); err != nil {
		t.Fatal(err)
	}
	long := newRegistry(t, ns, Options{Bucket: "short", TTL: time.Minute})
	info := discoverytest.NewInfo("127.0.0.1:4000")
	reg, err := long.Register(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	if p := reg.(*registration).period(); p > testTTL/3 {
		t.Fatalf("refresh period %v for a bucket TTL of %v", p, testTTL)
	}
	deadline := time.Now().Add(3 * testTTL)
	for time.Now().Before(deadline) {
		if err := discoverytest.Found(ctx, short, info); err != nil {
			t.Fatalf("entry expired: %v", err)
		}
		time.Sleep(testTTL / 4)
	}
}

// TestRegisterWithServerDown: Register fails within the timeout instead of
// waiting for the server.
func TestRegisterWithServerDown(t *testing.T) {
	ns := startServer(t)
	r := newRegistry(t, ns, Options{})
	ns.stop()
	start := time.Now()
	_, err := r.Register(context.Background(), discoverytest.NewInfo("127.0.0.1:4001"))
	if err == nil {
		t.Fatal("Register with the server down succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Register took %v to fail", d)
	}
	if _, err := r.Lookup(context.Background(), peer.NewID()); err == nil || errors.Is(err, discovery.ErrNotFound) {
		t.Fatalf("Lookup with the server down: %v, want an error other than ErrNotFound", err)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"short ttl", Options{TTL: 50 * time.Millisecond}, false},
		{"refresh equal to ttl", Options{TTL: time.Second, Refresh: time.Second}, false},
		{"negative timeout", Options{Timeout: -1}, false},
	} {
		_, err := tc.opts.withDefaults()
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	o, _ := Options{}.withDefaults()
	if o.Bucket != "velo_peers" || o.TTL != 10*time.Second || o.Refresh != o.TTL/3 || o.Timeout != 2*time.Second {
		t.Errorf("defaults: %+v", o)
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New with a nil connection succeeded")
	}
}

// TestWatchOutlivesItsConnection: a watch whose connection the caller
// closed first still ends, and closes its channel, when its ctx ends.
func TestWatchOutlivesItsConnection(t *testing.T) {
	ns := startServer(t)
	ctx := discoverytest.Ctx(t)
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(nc, Options{TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := r.Register(ctx, discoverytest.NewInfo("127.0.0.1:4002"))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, err := r.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := <-ch; c.Kind != discovery.Put {
		t.Fatalf("first change %v, want a put", c)
	}
	nc.Close()
	cancel()
	closed := make(chan struct{})
	go func() {
		for range ch {
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel still open 5 s after its ctx ended")
	}
	// Close fails (the connection is closed) but returns, and its
	// goroutine is gone (goleak checks).
	reg.Close(ctx)
}
