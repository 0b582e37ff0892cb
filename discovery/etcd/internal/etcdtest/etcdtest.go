// Package etcdtest runs an embedded single-member etcd on loopback for the
// etcd module's tests.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is an embedded etcd whose loopback ports stay the same across
// restarts, with its data in a test directory.
type Server struct {
	ClientURL url.URL // http://127.0.0.1:port
	peerURL   url.URL
	dir       string

	mu sync.Mutex
	e  *embed.Etcd // guarded by mu; nil while stopped
}

// Start starts a Server that the end of t stops.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		ClientURL: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))},
		peerURL:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))},
		dir:       t.TempDir(),
	}
	s.Restart(t)
	t.Cleanup(s.Stop)
	return s
}

// Restart starts the stopped server again, on the same ports and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "velo-test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{s.ClientURL}, []url.URL{s.ClientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{s.peerURL}, []url.URL{s.peerURL}
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
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
}

// Stop stops the server; it may be restarted.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
