package nats_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	velonats "github.com/velo-messenger/velo/transport/nats"
)

func startMessenger(t *testing.T, url string) *velo.Messenger {
	t.Helper()
	m, err := velo.NewBuilder().AddTransport(newTransport(url, 0)).Build(context.Background())
	if err != nil {
		t.Fatal(err)
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

// The NATS server restarts while calls run: the call in flight fails with
// ErrPeerLost at once, the calls made while the server is down fail by
// their deadline at the latest, none hangs, and once nats.go has
// reconnected calls go through again.
func TestServerRestartDuringTraffic(t *testing.T) {
	ns := velonats.StartTestServer(t, 0)
	a, b := startMessenger(t, ns.URL()), startMessenger(t, ns.URL())
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	for _, h := range []*velo.HandlerBuilder{
		velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }),
		velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
			started <- struct{}{}
			select {
			case <-ctx.Done():
			case <-release:
			}
			return nil, nil
		}),
	} {
		if err := b.RegisterHandler(h.Build()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	echo := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := a.Unary("echo").RawPayload([]byte("x")).Instance(b.InstanceID()).Send(ctx)
		return err
	}
	if err := echo(5 * time.Second); err != nil {
		t.Fatalf("first call: %v", err)
	}

	blocked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := a.Unary("block").Instance(b.InstanceID()).Send(ctx)
		blocked <- err
	}()
	<-started

	// Background traffic: each call is bounded by its deadline plus a
	// margin, whatever state the server is in.
	const callTimeout = time.Second
	var stop atomic.Bool
	var ok, failed atomic.Int32
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for !stop.Load() {
				start := time.Now()
				err := echo(callTimeout)
				if d := time.Since(start); d > callTimeout+2*time.Second {
					errs <- fmt.Errorf("sender %d: a call took %v with a %v deadline (%v)", g, d, callTimeout, err)
					return
				}
				if err == nil {
					ok.Add(1)
				} else {
					failed.Add(1)
					time.Sleep(10 * time.Millisecond) // no busy loop while the server is down
				}
			}
		})
	}

	ns.Restart()

	select {
	case err := <-blocked:
		if !errors.Is(err, velo.ErrPeerLost) {
			t.Errorf("call in flight across the restart: %v, want ErrPeerLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the call in flight did not end within 10s of the restart")
	}

	// Calls go through again once both sides have reconnected.
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for {
		if last = echo(callTimeout); last == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call got through within 15s after the restart: %v", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("background calls: %d ok, %d failed", ok.Load(), failed.Load())
}
