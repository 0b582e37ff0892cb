package velo_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/testcerts"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// Over TCP (with TLS too), Unix sockets and the in-memory transport, a caller reads its
// own answer when nobody else reads its connection (transport.Leader).
// These tests check what that must not change: a connection is used both
// ways, calls end with their ctx, and answers stay in sync.
var callerReadTransports = map[string]func(t *testing.T) func() transport.Transport{
	"tcp": func(*testing.T) func() transport.Transport {
		return func() transport.Transport { return tcp.New(tcp.Options{}) }
	},
	// A read deadline that ends a caller's turn inside a TLS record:
	// crypto/tls keeps what it read and goes on.
	"tcp+tls": func(t *testing.T) func() transport.Transport {
		ca := testcerts.NewCA(t, "velo test CA")
		cfg := testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/both"}))
		return func() transport.Transport { return tcp.New(tcp.Options{TLS: cfg}) }
	},
	"uds": func(t *testing.T) func() transport.Transport {
		dir := t.TempDir()
		n := 0
		return func() transport.Transport {
			n++
			return uds.New(uds.Options{Path: dir + "/" + string(rune('a'+n)) + ".sock"})
		}
	},
	"mem": func(*testing.T) func() transport.Transport {
		n := mem.NewNetwork()
		return func() transport.Transport { return mem.New(n) }
	},
}

// sharedPair starts a and b where only a knows b: b's calls to a go over
// the connection a dialed.
func sharedPair(t *testing.T, mk func() transport.Transport) (a, b *velo.Messenger) {
	t.Helper()
	a = newMessenger(t, velo.Options{}, mk())
	b = newMessenger(t, velo.Options{}, mk())
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func echoUnary(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }

// TestCallbackOnACallersConnection: a calls b until a's connection is read
// by a's callers alone; then b calls a over that same connection, with no
// call of a's in flight to read it: the request must still be read and
// answered, within a bound (two lingerTicks, 2 ms) far below the 5 s the
// call may take here.
func TestCallbackOnACallersConnection(t *testing.T) {
	for name, mk := range callerReadTransports {
		t.Run(name, func(t *testing.T) {
			a, b := sharedPair(t, mk(t))
			mustRegister(t, a, velo.UnaryHandler("echo", echoUnary))
			mustRegister(t, b, velo.UnaryHandler("echo", echoUnary))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for range 50 {
				if _, err := a.Unary("echo").RawPayload([]byte("a")).Instance(b.InstanceID()).Send(ctx); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			out, err := b.Unary("echo").RawPayload([]byte("back")).Instance(a.InstanceID()).Send(ctx)
			if err != nil || string(out) != "back" {
				t.Fatalf("b's call on a's connection: %q, %v", out, err)
			}
			t.Logf("b's call answered in %v", time.Since(start))
			if n := len(a.Stats().Peers); n != 1 {
				t.Fatalf("a has %d connections, want 1: the call did not share the connection", n)
			}
		})
	}
}

// TestCallsBothWaysAtOnce: callers of a and of b share their one
// connection at once; every call is answered with its own payload.
func TestCallsBothWaysAtOnce(t *testing.T) {
	for name, mk := range callerReadTransports {
		t.Run(name, func(t *testing.T) {
			a, b := sharedPair(t, mk(t))
			mustRegister(t, a, velo.UnaryHandler("echo", echoUnary))
			mustRegister(t, b, velo.UnaryHandler("echo", echoUnary))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := a.Unary("echo").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatal(err) // connects, so that b knows a
			}
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for i := range 8 {
				from, to := a, b
				if i%2 == 1 {
					from, to = b, a
				}
				wg.Go(func() {
					for j := range 200 {
						p := []byte{byte(i), byte(j), byte(j >> 8)}
						out, err := from.Unary("echo").RawPayload(p).Instance(to.InstanceID()).Send(ctx)
						if err == nil && !bytes.Equal(out, p) {
							err = errors.New("answer of another call")
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestCallerReadingEndsWithItsCtx: a caller reading its own connection
// for an answer that does not come returns when its ctx is cancelled or
// its deadline passes, and the answers that come later, large ones
// included, reach their own callers.
func TestCallerReadingEndsWithItsCtx(t *testing.T) {
	for name, mk := range callerReadTransports {
		t.Run(name, func(t *testing.T) {
			a, b := pairWith(t, velo.Options{}, mk(t))
			release := make(chan struct{})
			mustRegister(t, b, velo.UnaryHandler("slow", func(ctx context.Context, c *velo.Context) ([]byte, error) {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return bytes.Repeat([]byte{7}, 1<<20), nil
			}))
			mustRegister(t, b, velo.UnaryHandler("echo", echoUnary))
			ctx := context.Background()
			if _, err := a.Unary("echo").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatal(err)
			}

			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(30*time.Millisecond, cancel)
			start := time.Now()
			_, err := a.Unary("slow").Instance(b.InstanceID()).Send(cctx)
			if !errors.Is(err, velo.ErrCanceled) {
				t.Fatalf("cancelled call: %v, want ErrCanceled", err)
			}
			dctx, dcancel := context.WithTimeout(ctx, 30*time.Millisecond)
			_, err = a.Unary("slow").Instance(b.InstanceID()).Send(dctx)
			dcancel()
			if !errors.Is(err, velo.ErrDeadlineExceeded) {
				t.Fatalf("call past its deadline: %v, want ErrDeadlineExceeded", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("the two calls took %v", took)
			}

			// A slow answer of 1 MiB that arrives while another caller
			// reads, then small ones: each reaches its caller.
			done := make(chan error, 1)
			go func() {
				out, err := a.Unary("slow").Instance(b.InstanceID()).Send(ctx)
				if err == nil && len(out) != 1<<20 {
					err = errors.New("short answer")
				}
				done <- err
			}()
			time.Sleep(20 * time.Millisecond)
			close(release)
			for i := range 100 {
				p := []byte{byte(i)}
				out, err := a.Unary("echo").RawPayload(p).Instance(b.InstanceID()).Send(ctx)
				if err != nil || !bytes.Equal(out, p) {
					t.Fatalf("call %d after the slow ones: %q, %v", i, out, err)
				}
			}
			if err := <-done; err != nil {
				t.Fatalf("slow call: %v", err)
			}
		})
	}
}
