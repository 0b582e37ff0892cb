package velo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
)

// A request that arrives alone for a Spawn handler runs on the receive
// goroutine (inline.go). These tests check what Spawn promises all the
// same: a handler that blocks holds up nothing else on its connection,
// and one that waits for its ctx sees it end with the connection.

// TestSpawnHandlerThatBlocksDoesNotHoldItsConnection: while a Spawn
// handler blocks, the next call on the same connection is answered, within
// a bound (inlineLimit + inlineTick, 2 ms) far below the 5 s allowed here.
func TestSpawnHandlerThatBlocksDoesNotHoldItsConnection(t *testing.T) {
	for name, mk := range callerReadTransports {
		t.Run(name, func(t *testing.T) {
			a, b := pairWith(t, velo.Options{}, mk(t))
			started := make(chan struct{}, 1)
			release := make(chan struct{})
			mustRegister(t, b, velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return []byte("released"), nil
			}))
			mustRegister(t, b, velo.UnaryHandler("echo", echoUnary))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := a.Unary("echo").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatal(err)
			}
			for round := range 3 {
				blocked := make(chan error, 1)
				go func() {
					out, err := a.Unary("block").Instance(b.InstanceID()).Send(ctx)
					if err == nil && string(out) != "released" {
						err = errors.New("wrong answer")
					}
					blocked <- err
				}()
				<-started
				start := time.Now()
				echoCtx, echoCancel := context.WithTimeout(ctx, 5*time.Second)
				out, err := a.Unary("echo").RawPayload([]byte("next")).Instance(b.InstanceID()).Send(echoCtx)
				echoCancel()
				if err != nil || string(out) != "next" {
					t.Fatalf("round %d: a call behind a blocked handler: %q, %v", round, out, err)
				}
				t.Logf("round %d: answered %v behind the blocked handler", round, time.Since(start))
				release <- struct{}{}
				if err := <-blocked; err != nil {
					t.Fatalf("round %d: blocked call: %v", round, err)
				}
			}
		})
	}
}

// TestSpawnHandlerWaitingForItsCtxWhenTheConnectionEnds: a handler that
// waits for nothing but its ctx, for a call without deadline, sees the ctx
// end once the caller's instance goes away, and its own instance shuts
// down.
func TestSpawnHandlerWaitingForItsCtxWhenTheConnectionEnds(t *testing.T) {
	for name, mk := range callerReadTransports {
		t.Run(name, func(t *testing.T) {
			mkT := mk(t)
			a := newMessenger(t, velo.Options{}, mkT())
			b := newMessenger(t, velo.Options{}, mkT())
			if err := a.RegisterPeer(b.PeerInfo()); err != nil {
				t.Fatal(err)
			}
			started := make(chan struct{}, 1)
			ended := make(chan error, 1)
			mustRegister(t, b, velo.UnaryHandler("stuck", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
				started <- struct{}{}
				<-ctx.Done()
				ended <- ctx.Err()
				return nil, ctx.Err()
			}))
			go a.Unary("stuck").Instance(b.InstanceID()).Send(context.Background())
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler never ran")
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.Shutdown(sctx); err != nil {
				t.Fatalf("a.Shutdown: %v", err)
			}
			select {
			case err := <-ended:
				if err == nil {
					t.Fatal("the handler's ctx ended without an error")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the handler's ctx did not end with the connection")
			}
		})
	}
}
