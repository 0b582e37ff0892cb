package nats_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/testcerts"
	velonats "github.com/velo-messenger/velo/transport/nats"
)

// TestTLSToTheServer: with a NATS server that requires TLS and a client
// certificate from its CA, instances with good certificates call each
// other through it; an instance without TLS, with a certificate from
// another CA, or with an expired one, cannot connect (Build fails, saying
// why), and the good ones keep working, at their latency; a client that
// never completes its handshake is dropped by the server; a certificate
// rotated on the server serves new connections.
func TestTLSToTheServer(t *testing.T) {
	ca, other := testcerts.NewCA(t, "velo test CA"), testcerts.NewCA(t, "another CA")
	var current atomic.Pointer[tls.Certificate]
	first := ca.Issue(t, testcerts.Leaf{CN: "nats-server"})
	current.Store(&first)
	serverTLS := testcerts.Mutual(ca, first)
	serverTLS.Certificates = nil
	serverTLS.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }
	// The server knows these identities; a certificate of another one is
	// refused (the identity not allowed).
	var users []string
	for _, n := range []string{"a", "b", "c", "probe"} {
		users = append(users, "spiffe://velo.test/"+n)
	}
	ns := velonats.StartTLSTestServer(t, serverTLS, users...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := func(c *tls.Config) (*velo.Messenger, error) {
		m, err := velo.NewBuilder().
			AddTransport(velonats.New(velonats.Options{URL: ns.URL(), TLS: c, DialTimeout: 2 * time.Second})).
			Build(ctx)
		if err == nil {
			t.Cleanup(func() { m.Shutdown(context.Background()) })
		}
		return m, err
	}
	good := func(name string) *tls.Config {
		return testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/" + name}))
	}
	a, err := start(good("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := start(good("b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterHandler(velo.UnaryHandler("who", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return []byte("identity=" + c.Identity), nil
	}).Build()); err != nil {
		t.Fatal(err)
	}
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	call := func() {
		t.Helper()
		got, err := a.Unary("who").Instance(b.InstanceID()).Send(ctx)
		if err != nil || string(got) != "identity=" {
			t.Fatalf("call through the TLS NATS server: %q, %v (over NATS a peer has no identity)", got, err)
		}
	}
	call()
	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	var before []time.Duration
	for range 200 {
		start := time.Now()
		call()
		before = append(before, time.Since(start))
	}
	stop := make(chan struct{})
	duringCh := make(chan []time.Duration)
	go func() {
		var during []time.Duration
		for {
			select {
			case <-stop:
				duringCh <- during
				return
			default:
			}
			start := time.Now()
			if _, err := a.Unary("who").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Errorf("good call during the attacks: %v", err)
				duringCh <- during
				return
			}
			during = append(during, time.Since(start))
		}
	}()
	for _, bad := range []struct {
		name string
		c    *tls.Config
	}{
		{"no TLS", nil},
		{"certificate of another CA", testcerts.Mutual(ca, other.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/intruder"}))},
		{"expired certificate", testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/old",
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}))},
		{"server of another CA", testcerts.Mutual(other, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/lost"}))},
		{"identity not allowed", testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/evil"}))},
	} {
		_, err := start(bad.c)
		if err == nil || !strings.Contains(err.Error(), "nats") {
			t.Errorf("%s: Build = %v, want a failure to connect to NATS", bad.name, err)
		}
	}
	// A client that connects and never starts its TLS handshake.
	u, err := url.Parse(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, raw) // the server's INFO, then its close
	raw.Close()
	if took := time.Since(began); err != nil || took > 5*time.Second {
		t.Errorf("a client that never did its TLS handshake was dropped after %v (%v), want within the server's 2 s TLS timeout", took, err)
	}
	close(stop)
	during := <-duringCh
	if len(during) > 0 {
		t.Logf("good calls p50 %v before the attacks, %v during (%d calls)", p50(before).Round(time.Microsecond), p50(during).Round(time.Microsecond), len(during))
		if p50(during) > 2*p50(before) {
			t.Errorf("good calls p50 %v during the attacks, over twice %v before", p50(during), p50(before))
		}
	}
	// Rotation: a new connection to the server gets the new certificate;
	// the instances' connections keep working.
	second := ca.Issue(t, testcerts.Leaf{CN: "nats-server"})
	current.Store(&second)
	c, err := start(good("c"))
	if err != nil {
		t.Fatalf("an instance after the rotation: %v", err)
	}
	pc, err := natsgo.Connect(ns.URL(), natsgo.Secure(good("probe")))
	if err != nil {
		t.Fatalf("a NATS client after the rotation: %v", err)
	}
	st, err := pc.TLSConnectionState()
	pc.Close()
	if err != nil || len(st.PeerCertificates) == 0 || !st.PeerCertificates[0].Equal(second.Leaf) {
		t.Errorf("after the rotation a new connection was not served the new certificate (%v)", err)
	}
	if err := c.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unary("who").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Errorf("the instance connected after the rotation: %v", err)
	}
	call()
}
