package velo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport/mem"
)

// memFaultPair starts messengers a and b on n under the names "a" and "b",
// with an "echo" handler on b, and warms the connection from a to b up.
func memFaultPair(t *testing.T, n *mem.Network, opts velo.Options) (a, b *velo.Messenger) {
	t.Helper()
	a = newMessenger(t, opts, mem.New(n, mem.Options{Addr: "a"}))
	b = newMessenger(t, opts, mem.New(n, mem.Options{Addr: "b"}))
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if _, err := echoWithin(a, b, "warm", 10*time.Second); err != nil {
		t.Fatalf("echo before any fault: %v", err)
	}
	return a, b
}

// echoWithin calls b's echo from a with a deadline d from now, and
// returns how long the call took.
func echoWithin(a, b *velo.Messenger, p string, d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	got, err := a.Unary("echo").RawPayload([]byte(p)).Instance(b.InstanceID()).Send(ctx)
	if err == nil && string(got) != p {
		err = errors.New("echo answered " + string(got))
	}
	return time.Since(start), err
}

// memFaultSlack is how long past its deadline a call may take to return.
const memFaultSlack = 500 * time.Millisecond

// TestMemFaultPartition: across a partition a call ends at its deadline
// with ErrDeadlineExceeded while the connection stands; once the
// keepalive gives the connection up, a call waiting on it fails with
// ErrPeerLost; after Heal, calls succeed again.
func TestMemFaultPartition(t *testing.T) {
	n := mem.NewNetwork()
	opts := velo.Options{KeepaliveInterval: 50 * time.Millisecond, KeepaliveTimeout: 300 * time.Millisecond}
	a, b := memFaultPair(t, n, opts)

	n.Partition("a", "b")
	const short = 150 * time.Millisecond
	took, err := echoWithin(a, b, "partitioned", short)
	if !errors.Is(err, velo.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("echo across a partition: %v, want ErrDeadlineExceeded", err)
	}
	if took < short || took > short+memFaultSlack {
		t.Errorf("echo across a partition with a %v deadline returned after %v", short, took)
	}

	// A call with time to spare is in flight when the keepalive gives
	// the connection up: it fails then, long before its deadline.
	took, err = echoWithin(a, b, "lost", 10*time.Second)
	if !errors.Is(err, velo.ErrPeerLost) || took > 5*time.Second {
		t.Errorf("echo while the partition lasts: %v after %v, want ErrPeerLost within the keepalive bound", err, took)
	}

	// The messenger dials b again, across the partition: the dial waits.
	// Healing lets it through; a call may still meet a dial attempt that
	// failed meanwhile, so it is tried again for a while.
	n.Heal()
	healed := time.Now()
	for tries := 1; ; tries++ {
		_, err := echoWithin(a, b, "healed", time.Second)
		if err == nil {
			t.Logf("echo answered %v after Heal, try %d", time.Since(healed).Round(time.Millisecond), tries)
			break
		}
		if time.Since(healed) > 10*time.Second {
			t.Fatalf("echo still failing 10 s after Heal: %v", err)
		}
	}
}

// TestMemFaultDropRequests: while every frame from a to b is dropped,
// calls end at their deadline; with half of them dropped (seeded), every
// call ends with its answer or at its deadline; without the fault, calls
// succeed.
func TestMemFaultDropRequests(t *testing.T) {
	n := mem.NewNetwork()
	n.Seed(42)
	a, b := memFaultPair(t, n, velo.Options{})

	n.Drop("a", "b", 1)
	const d = 100 * time.Millisecond
	for range 3 {
		took, err := echoWithin(a, b, "dropped", d)
		if !errors.Is(err, velo.ErrDeadlineExceeded) {
			t.Errorf("echo with its request dropped: %v, want ErrDeadlineExceeded", err)
		}
		if took < d || took > d+memFaultSlack {
			t.Errorf("echo with its request dropped and a %v deadline returned after %v", d, took)
		}
	}

	n.Drop("a", "b", 0.5)
	ok, timedOut := 0, 0
	for range 20 {
		took, err := echoWithin(a, b, "maybe", d)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, velo.ErrDeadlineExceeded):
			timedOut++
			if took > d+memFaultSlack {
				t.Errorf("a timed out echo returned %v after its start, deadline %v", took, d)
			}
		default:
			t.Errorf("echo with half the frames dropped: %v, want an answer or ErrDeadlineExceeded", err)
		}
	}
	t.Logf("half the frames from a to b dropped: %d answered, %d timed out", ok, timedOut)
	if ok == 0 || timedOut == 0 {
		t.Errorf("%d answered, %d timed out of 20: want some of each", ok, timedOut)
	}

	n.Drop("a", "b", 0)
	if _, err := echoWithin(a, b, "clear", 5*time.Second); err != nil {
		t.Errorf("echo once the fault is removed: %v", err)
	}
}
