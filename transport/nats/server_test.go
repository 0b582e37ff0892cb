package nats

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestServer is an embedded nats-server on loopback, shut down when the
// test ends. (Exported for the external tests of this package only: it
// lives in a _test file.)
type TestServer struct {
	t    testing.TB
	opts server.Options
	s    *server.Server
}

// StartTestServer starts a server; maxPayload 0 keeps the server's
// default (1 MiB).
func StartTestServer(t testing.TB, maxPayload int32) *TestServer {
	t.Helper()
	ns := &TestServer{t: t, opts: server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: maxPayload,
	}}
	ns.start()
	t.Cleanup(ns.Stop)
	return ns
}

func (ns *TestServer) start() {
	ns.t.Helper()
	o := ns.opts
	s, err := server.NewServer(&o)
	if err != nil {
		ns.t.Fatalf("nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		ns.t.Fatal("nats-server not ready within 10s")
	}
	ns.s = s
	// A restart must come back on the same port, as a real server would.
	ns.opts.Port = s.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down and waits until it is gone.
func (ns *TestServer) Stop() {
	if ns.s != nil {
		ns.s.Shutdown()
		ns.s.WaitForShutdown()
		ns.s = nil
	}
}

// Restart stops the server and starts a new one on the same port.
func (ns *TestServer) Restart() {
	ns.t.Helper()
	ns.Stop()
	ns.start()
}

// StartTLSTestServer starts a server that requires TLS with c (and a
// client certificate, if c asks for one). With users, it maps each client
// certificate to the user its identity names (verify_and_map) and refuses
// a certificate that names none.
func StartTLSTestServer(t testing.TB, c *tls.Config, users ...string) *TestServer {
	t.Helper()
	ns := &TestServer{t: t, opts: server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		TLSConfig:  c,
		TLS:        true,
		TLSVerify:  c.ClientAuth == tls.RequireAndVerifyClientCert,
		TLSTimeout: 2,
		TLSMap:     len(users) > 0,
	}}
	for _, u := range users {
		ns.opts.Users = append(ns.opts.Users, &server.User{Username: u})
	}
	ns.start()
	t.Cleanup(ns.Stop)
	return ns
}

// URL is where clients connect.
func (ns *TestServer) URL() string { return ns.s.ClientURL() }
