package uds_test

import (
	"bytes"
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// countingTransport counts the connections a transport dialed.
type countingTransport struct {
	transport.Transport
	dials atomic.Int32
}

func (c *countingTransport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	conn, err := c.Transport.Dial(ctx, addr, bind)
	if err == nil {
		c.dials.Add(1)
	}
	return conn, err
}

// node is a messenger on [uds, tcp], in that order of preference.
type node struct {
	m        *velo.Messenger
	uds, tcp *countingTransport
}

func startNode(t *testing.T) *node {
	t.Helper()
	n := &node{
		uds: &countingTransport{Transport: uds.New(uds.Options{})},
		tcp: &countingTransport{Transport: tcp.New(tcp.Options{})},
	}
	m, err := velo.NewBuilder().AddTransport(n.uds).AddTransport(n.tcp).Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	err = m.RegisterHandler(velo.UnaryHandler("whoami", func(_ context.Context, c *velo.Context) ([]byte, error) {
		id := c.Msg.InstanceID()
		return id[:], nil
	}).Build())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// whoami calls b's whoami from a and checks that b answered.
func whoami(t *testing.T, a *node, b peer.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := a.m.Unary("whoami").Instance(b).Send(ctx)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	if !bytes.Equal(got, b[:]) {
		t.Fatalf("answered by %x, want %s", got, b)
	}
}

// The first transport in the order added that has an address for the
// peer is used: UDS when the peer's socket is on this host.
func TestPreferUDS(t *testing.T) {
	a, b := startNode(t), startNode(t)
	if err := a.m.RegisterPeer(b.m.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	whoami(t, a, b.m.InstanceID())
	if a.uds.dials.Load() != 1 || a.tcp.dials.Load() != 0 {
		t.Errorf("dials: uds %d, tcp %d; want the call over uds", a.uds.dials.Load(), a.tcp.dials.Load())
	}
}

// A peer whose socket is gone (another host, or removed) is reached over
// TCP, without waiting for a timeout.
func TestFailoverWhenSocketIsGone(t *testing.T) {
	a, b := startNode(t), startNode(t)
	info := b.m.PeerInfo()
	if err := os.Remove(info.Addresses[uds.Name]); err != nil {
		t.Fatal(err)
	}
	if err := a.m.RegisterPeer(info); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	whoami(t, a, info.ID)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failover took %v", d)
	}
	if a.uds.dials.Load() != 0 || a.tcp.dials.Load() != 1 {
		t.Errorf("dials: uds %d, tcp %d; want the call over tcp", a.uds.dials.Load(), a.tcp.dials.Load())
	}
}

// A socket that exists but belongs to another instance is not trusted:
// the handshake shows who answers, and the messenger goes on to TCP.
func TestFailoverWhenSocketBelongsToAnother(t *testing.T) {
	a, b, c := startNode(t), startNode(t), startNode(t)
	info := b.m.PeerInfo()
	info.Addresses[uds.Name] = c.m.PeerInfo().Addresses[uds.Name]
	if err := a.m.RegisterPeer(info); err != nil {
		t.Fatal(err)
	}
	whoami(t, a, info.ID)
	if a.uds.dials.Load() != 1 || a.tcp.dials.Load() != 1 {
		t.Errorf("dials: uds %d, tcp %d; want a refused uds handshake, then tcp", a.uds.dials.Load(), a.tcp.dials.Load())
	}
}

// When the UDS connection breaks and the socket is gone, the next call
// reconnects over TCP.
func TestFailoverAfterConnectionLoss(t *testing.T) {
	a, b := startNode(t), startNode(t)
	info := b.m.PeerInfo()
	if err := a.m.RegisterPeer(info); err != nil {
		t.Fatal(err)
	}
	whoami(t, a, info.ID)
	b.uds.Close() // the socket goes, and the connection with it
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := a.m.Unary("whoami").Instance(info.ID).Send(ctx)
		cancel()
		if err == nil {
			break
		}
		// A call may race the news of the broken connection and fail with
		// ErrPeerLost; the next one must get through.
		if time.Now().After(deadline) {
			t.Fatalf("no call got through after the UDS socket went: %v", err)
		}
	}
	if a.tcp.dials.Load() != 1 {
		t.Errorf("tcp dials %d, want 1", a.tcp.dials.Load())
	}
}
