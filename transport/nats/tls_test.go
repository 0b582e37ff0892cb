package nats_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/testcerts"
	velonats "github.com/velo-messenger/velo/transport/nats"
)

// TestTLSToTheServer: with a NATS server that requires TLS and a client
// certificate from its CA, instances with good certificates call each
// other through it; an instance without TLS, with a certificate from
// another CA, or with an expired one, cannot connect (Build fails, saying
// why), and the good ones keep working.
func TestTLSToTheServer(t *testing.T) {
	ca, other := testcerts.NewCA(t, "velo test CA"), testcerts.NewCA(t, "another CA")
	ns := velonats.StartTLSTestServer(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{CN: "nats-server"})))
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
	for _, bad := range []struct {
		name string
		c    *tls.Config
	}{
		{"no TLS", nil},
		{"certificate of another CA", testcerts.Mutual(ca, other.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/intruder"}))},
		{"expired certificate", testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/old",
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}))},
		{"server of another CA", testcerts.Mutual(other, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/lost"}))},
	} {
		_, err := start(bad.c)
		if err == nil || !strings.Contains(err.Error(), "nats") {
			t.Errorf("%s: Build = %v, want a failure to connect to NATS", bad.name, err)
		}
		call()
	}
}
