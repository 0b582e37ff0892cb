package velo_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
)

func seqPayload(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// TestSpawnRunsMessagesConcurrently blocks every handler run on one
// barrier: the barrier opens only once all n runs are in progress at once.
func TestSpawnRunsMessagesConcurrently(t *testing.T) {
	const n = 8
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			arrived := make(chan struct{}, n)
			release := newReleaser(t)
			mustRegister(t, b, velo.AMHandler("wait", func(ctx context.Context, _ *velo.Context) error {
				arrived <- struct{}{}
				select {
				case <-release.ch:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}).Spawn())
			errs := make(chan error, n)
			for range n {
				go func() { errs <- a.AMSync("wait").Instance(b.InstanceID()).Send(ctx) }()
			}
			for i := range n {
				recvOrFail(t, ctx, arrived, fmt.Sprintf("run %d of %d to start while the others block", i+1, n))
			}
			release.release()
			for range n {
				if err := recvOrFail(t, ctx, errs, "AMSync"); err != nil {
					t.Errorf("AMSync: %v", err)
				}
			}
		})
	}
}

// TestInlineRunsOnReceivePath shows that an Inline handler holds up the
// next message of its connection, even one for another handler, while a
// Spawn handler does not. The slow handler waits for the fast one to run;
// under Inline it cannot, so the wait ends on its fallback, and the
// sequence numbers say the fast handler ran after the slow one returned.
// The Spawn row is the control: the same wait ends as soon as fast runs.
func TestInlineRunsOnReceivePath(t *testing.T) {
	// How long the inline row gives the fast message to overtake. The test
	// passes by this window running out; a shorter one weakens the check
	// but cannot make a correct runtime fail.
	const window = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		mode func(*velo.HandlerBuilder) *velo.HandlerBuilder
		want []string
	}{
		{"inline", (*velo.HandlerBuilder).Inline, []string{"slow-start", "slow-end", "fast"}},
		{"spawn", (*velo.HandlerBuilder).Spawn, []string{"slow-start", "fast", "slow-end"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := pair(t)
			var (
				mu    sync.Mutex
				seq   int
				order []string
			)
			record := func(ev string) {
				mu.Lock()
				defer mu.Unlock()
				seq++
				order = append(order, fmt.Sprintf("%d:%s", seq, ev))
			}
			entered := make(chan struct{})
			slowDone := make(chan struct{})
			fastRan := make(chan struct{})
			var fastOnce sync.Once
			mustRegister(t, b, tc.mode(velo.AMHandler("slow", func(ctx context.Context, _ *velo.Context) error {
				defer close(slowDone)
				record("slow-start")
				close(entered)
				timer := time.NewTimer(window)
				defer timer.Stop()
				select {
				case <-fastRan:
				case <-timer.C:
				case <-ctx.Done():
				}
				record("slow-end")
				return nil
			})))
			mustRegister(t, b, velo.AMHandler("fast", func(context.Context, *velo.Context) error {
				record("fast")
				fastOnce.Do(func() { close(fastRan) })
				return nil
			}).Spawn())

			if err := a.AMSend("slow").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSend slow: %v", err)
			}
			recvOrFail(t, ctx, entered, "slow to start")
			if err := a.AMSync("fast").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSync fast: %v", err)
			}
			recvOrFail(t, ctx, slowDone, "slow to finish")
			mu.Lock()
			got := slices.Clone(order)
			mu.Unlock()
			var want []string
			for i, ev := range tc.want {
				want = append(want, fmt.Sprintf("%d:%s", i+1, ev))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("order = %q, want %q", got, want)
			}
		})
	}
}

// TestInlineKeepsConnectionOrder sends numbered messages to an Inline
// handler; running on the receive path, it sees them in send order.
func TestInlineKeepsConnectionOrder(t *testing.T) {
	const n = 300
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			var (
				mu  sync.Mutex
				got []uint64
			)
			mustRegister(t, b, velo.AMHandler("seq", func(_ context.Context, c *velo.Context) error {
				mu.Lock()
				got = append(got, binary.BigEndian.Uint64(c.Payload))
				mu.Unlock()
				return nil
			}).Inline())
			for i := range uint64(n) {
				if err := a.AMSend("seq").RawPayload(seqPayload(i)).Instance(b.InstanceID()).Send(ctx); err != nil {
					t.Fatalf("AMSend %d: %v", i, err)
				}
			}
			if err := a.AMSync("seq").RawPayload(seqPayload(n)).Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSync barrier: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, v := range got {
				if v != uint64(i) {
					t.Fatalf("message %d carried seq %d (first %d: %v)", i, v, min(len(got), 10), got[:min(len(got), 10)])
				}
			}
			if len(got) != n+1 {
				t.Fatalf("handled %d messages, want %d", len(got), n+1)
			}
		})
	}
}

// TestOrderedPerSenderOrderAcrossSenders has 8 instances send 500 numbered
// AMSends each to one Ordered handler. Each sender's messages must arrive
// all, in order; and messages of different senders must run in parallel:
// the first message handled waits until a message of another sender runs.
func TestOrderedPerSenderOrderAcrossSenders(t *testing.T) {
	const (
		senders = 8
		perSend = 500
		barrier = math.MaxUint64
	)
	ctx := testCtx(t)
	recv := newMessenger(t, velo.Options{})

	var (
		mu      sync.Mutex
		got     = make(map[peer.ID][]uint64)
		waiter  peer.ID // the sender of the first message handled
		overlap = make(chan struct{})
		once    sync.Once
	)
	overlapTimedOut := make(chan struct{}, 1)
	mustRegister(t, recv, velo.AMHandler("seq", func(ctx context.Context, c *velo.Context) error {
		seq := binary.BigEndian.Uint64(c.Payload)
		mu.Lock()
		first := waiter.IsZero()
		if first {
			waiter = c.Sender
		} else if c.Sender != waiter {
			once.Do(func() { close(overlap) })
		}
		if seq != barrier {
			got[c.Sender] = append(got[c.Sender], seq)
		}
		mu.Unlock()
		if first {
			// Hold the waiter's queue until another sender's message runs;
			// if Ordered serialised all senders, none ever would.
			timer := time.NewTimer(20 * time.Second)
			defer timer.Stop()
			select {
			case <-overlap:
			case <-timer.C:
				overlapTimedOut <- struct{}{}
			case <-ctx.Done():
				overlapTimedOut <- struct{}{}
			}
		}
		return nil
	}).Ordered())

	ms := make([]*velo.Messenger, senders)
	for i := range ms {
		ms[i] = newMessenger(t, velo.Options{})
		if err := ms[i].RegisterPeer(recv.PeerInfo()); err != nil {
			t.Fatal(err)
		}
	}
	start := make(chan struct{})
	errs := make(chan error, senders)
	for _, m := range ms {
		go func() {
			<-start
			for i := range uint64(perSend) {
				if err := m.AMSend("seq").RawPayload(seqPayload(i)).Instance(recv.InstanceID()).Send(ctx); err != nil {
					errs <- fmt.Errorf("sender %s: AMSend %d: %w", m.InstanceID().Short(), i, err)
					return
				}
			}
			// Same sender, same handler: the barrier runs after all of them.
			if err := m.AMSync("seq").RawPayload(seqPayload(barrier)).Instance(recv.InstanceID()).Send(ctx); err != nil {
				errs <- fmt.Errorf("sender %s: barrier: %w", m.InstanceID().Short(), err)
				return
			}
			errs <- nil
		}()
	}
	close(start)
	for range senders {
		if err := recvOrFail(t, ctx, errs, "a sender to finish"); err != nil {
			t.Error(err)
		}
	}
	select {
	case <-overlapTimedOut:
		t.Error("no message of another sender ran while the first one was held: senders did not run in parallel")
	default:
	}
	select {
	case <-overlap:
	default:
		t.Error("never saw two senders' messages in the handler at once")
	}

	mu.Lock()
	defer mu.Unlock()
	want := make([]uint64, perSend)
	for i := range want {
		want[i] = uint64(i)
	}
	for _, m := range ms {
		seqs := got[m.InstanceID()]
		if !slices.Equal(seqs, want) {
			bad := 0
			for i := 1; i < len(seqs); i++ {
				if seqs[i] <= seqs[i-1] {
					bad = i
					break
				}
			}
			t.Errorf("sender %s: %d messages handled, want %d; first out of order at index %d", m.InstanceID().Short(), len(seqs), perSend, bad)
		}
	}
	if len(got) != senders {
		t.Errorf("messages from %d senders, want %d", len(got), senders)
	}
}

// TestSpawnConcurrencyCap lets messages through a capped Spawn handler one
// release at a time and records how many run at once: exactly the cap.
func TestSpawnConcurrencyCap(t *testing.T) {
	const (
		limit = 3
		calls = 12
	)
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			var running, peak atomic.Int32
			arrived := make(chan struct{}, calls)
			tokens := make(chan struct{}, calls)
			mustRegister(t, b, velo.AMHandler("capped", func(ctx context.Context, _ *velo.Context) error {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				arrived <- struct{}{}
				defer running.Add(-1)
				select {
				case <-tokens:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}).Concurrency(limit))
			errs := make(chan error, calls)
			for range calls {
				go func() { errs <- a.AMSync("capped").Instance(b.InstanceID()).Send(ctx) }()
			}
			for i := range limit {
				recvOrFail(t, ctx, arrived, fmt.Sprintf("run %d to start", i+1))
			}
			// Each token ends one run, which lets exactly one more start.
			for i := limit; i < calls; i++ {
				tokens <- struct{}{}
				recvOrFail(t, ctx, arrived, fmt.Sprintf("run %d to start", i+1))
			}
			for range limit {
				tokens <- struct{}{}
			}
			for range calls {
				if err := recvOrFail(t, ctx, errs, "AMSync"); err != nil {
					t.Errorf("AMSync: %v", err)
				}
			}
			if p := peak.Load(); p != limit {
				t.Fatalf("at most %d runs at once, want exactly %d", p, limit)
			}
		})
	}
}
