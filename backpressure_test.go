package velo_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
)

// TestBackpressureOutlastsKeepalive checks that a receive path waiting for
// room in a busy handler's mailbox, for many times KeepaliveTimeout, does
// not get its connection declared lost on either side: every call
// completes (a lost connection would fail those in flight with
// ErrPeerLost), one-way messages included.
func TestBackpressureOutlastsKeepalive(t *testing.T) {
	const (
		interval = 50 * time.Millisecond
		timeout  = 200 * time.Millisecond
		work     = 120 * time.Millisecond // per message; 12 of them queue behind a mailbox of 1
	)
	opts := velo.Options{KeepaliveInterval: interval, KeepaliveTimeout: timeout}
	a, b := pairWith(t, opts, func() transport.Transport { return tcp.New(tcp.Options{}) })
	var ran atomic.Int32
	mustRegister(t, b, velo.UnaryHandler("slow", func(context.Context, *velo.Context) ([]byte, error) {
		time.Sleep(work)
		ran.Add(1)
		return []byte("ok"), nil
	}).Mailbox(1))
	mustRegister(t, b, velo.AMHandler("slow-am", func(context.Context, *velo.Context) error {
		time.Sleep(work)
		ran.Add(1)
		return nil
	}).Mailbox(1))

	bid := b.PeerInfo().ID
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One call first, so that the connection exists and its peer is known.
	if _, err := a.Unary("slow").Instance(bid).Send(ctx); err != nil {
		t.Fatal(err)
	}

	const calls, oneWay = 6, 6
	errs := make(chan error, calls+1)
	var wg sync.WaitGroup
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Unary("slow").Instance(bid).Send(ctx)
			errs <- err
		}()
	}
	for range oneWay {
		if err := a.AMSend("slow-am").Instance(bid).Send(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledged once every one-way message before it has run.
	errs <- a.AMSync("slow-am").Instance(bid).Send(ctx)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a call failed during backpressure: %v", err)
		}
	}
	if n := ran.Load(); n != 1+calls+oneWay+1 {
		t.Fatalf("%d messages ran, want %d", n, 1+calls+oneWay+1)
	}
}
