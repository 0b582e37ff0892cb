// Command events measures how fast a distributed event wakes an awaiter on
// another instance, beside a unary round trip between the same two
// instances.
//
// Two messengers run in this process, connected over TCP on the loopback:
// the owner creates events, the subscriber awaits them. Events go in
// batches of 100: the owner creates them, the subscriber awaits every
// handle (its subscriptions reach the owner), then the owner triggers them
// one after the other. The time from Trigger on the owner to Wait
// returning on the subscriber is the remote await latency: one
// _event_trigger message, one way. Then -rounds unary calls from the
// subscriber to an echo handler on the owner, one after the other, give
// the round-trip latency over the same connection for comparison.
//
// Both loops run back to back, so the numbers are those of a busy
// process. A message that finds the receiving process idle pays for waking
// its threads up as well, a few tens of microseconds on a small virtual
// machine, for an event as for any one-way message.
//
// Usage:
//
//	go run ./examples/events [-rounds 1000] [-warmup 100]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/transport/tcp"
)

const (
	roundTimeout = 10 * time.Second // bounds every round, so that nothing hangs
	stopTimeout  = 5 * time.Second  // for a messenger to shut down
	echoHandler  = "echo"
	payloadSize  = 32 // bytes of each unary call, echoed back
)

// config holds the command-line flags.
type config struct {
	rounds, warmup int
}

func main() {
	var cfg config
	flag.IntVar(&cfg.rounds, "rounds", 1000, "number of measured events, and of measured unary calls")
	flag.IntVar(&cfg.warmup, "warmup", 100, "events and calls before measuring, not measured")
	flag.Parse()
	err := cfg.validate()
	if err == nil && flag.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments: %q", flag.Args())
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		err = run(ctx, cfg, os.Stdout)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "events:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	switch {
	case c.rounds < 1:
		return fmt.Errorf("-rounds is %d, want at least 1", c.rounds)
	case c.warmup < 0:
		return fmt.Errorf("-warmup is %d, want 0 or more", c.warmup)
	}
	return nil
}

// run starts the two instances, measures, and writes the report to w.
func run(ctx context.Context, cfg config, w io.Writer) (err error) {
	if err := cfg.validate(); err != nil {
		return err
	}
	owner, err := start(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, shutdown(owner)) }()
	sub, err := start(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, shutdown(sub)) }()
	if err := sub.RegisterPeer(owner.PeerInfo()); err != nil {
		return err
	}
	echo := velo.UnaryHandler(echoHandler, func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	})
	if err := owner.RegisterHandler(echo.Build()); err != nil {
		return err
	}

	if _, err := measureAwait(ctx, owner, sub, cfg.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := measureUnary(ctx, sub, owner, cfg.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	await, err := measureAwait(ctx, owner, sub, cfg.rounds)
	if err != nil {
		return err
	}
	unary, err := measureUnary(ctx, sub, owner, cfg.rounds)
	if err != nil {
		return err
	}
	report(w, cfg, await, unary)
	return nil
}

func start(ctx context.Context) (*velo.Messenger, error) {
	return velo.NewBuilder().AddTransport(tcp.New(tcp.Options{Listen: "127.0.0.1:0"})).Build(ctx)
}

func shutdown(m *velo.Messenger) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return m.Shutdown(ctx)
}

// batch is how many events the subscriber awaits at once.
const batch = 100

// measureAwait times n remote awaits and returns the latencies sorted.
func measureAwait(ctx context.Context, owner, sub *velo.Messenger, n int) ([]time.Duration, error) {
	latencies := make([]time.Duration, 0, n)
	evs := make([]*events.Event, 0, batch)
	aws := make([]*events.Awaiter, 0, batch)
	for len(latencies) < n {
		evs, aws = evs[:0], aws[:0]
		for range min(batch, n-len(latencies)) {
			ev, err := owner.Events().NewEvent()
			if err != nil {
				return nil, err
			}
			// The handle is all the subscriber needs. Here both instances
			// share a process; across processes it travels in any payload
			// (events.Handle has a binary and a text form).
			aw, err := sub.Events().Awaiter(ev.Handle())
			if err != nil {
				return nil, err
			}
			evs, aws = append(evs, ev), append(aws, aw)
		}
		if err := subscribed(ctx, owner, len(evs)); err != nil {
			return nil, err
		}
		for i, ev := range evs {
			took, err := timeAwait(ctx, ev, aws[i])
			if err != nil {
				return nil, fmt.Errorf("event %d of %d: %w", len(latencies)+1, n, err)
			}
			latencies = append(latencies, took)
		}
	}
	slices.Sort(latencies)
	return latencies, nil
}

// subscribed waits until owner has recorded n remote subscriptions.
// Awaiting works whether the subscription lands before or after the
// trigger; waiting for it here makes the rounds time the trigger path
// alone. The owner's Stats is how this program knows.
func subscribed(ctx context.Context, owner *velo.Messenger, n int) error {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	for owner.Events().Stats().Subscriptions < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("subscriptions never reached the owner: %w", ctx.Err())
		case <-time.After(50 * time.Microsecond):
		}
	}
	return nil
}

// timeAwait triggers ev on its owner and returns how long until aw, on the
// subscriber, wakes.
func timeAwait(ctx context.Context, ev *events.Event, aw *events.Awaiter) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	start := time.Now()
	if err := ev.Trigger(); err != nil {
		return 0, err
	}
	if err := aw.Wait(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

var payload = make([]byte, payloadSize)

// measureUnary times n echo calls from sub to owner, one after the other,
// and returns the latencies sorted.
func measureUnary(ctx context.Context, sub, owner *velo.Messenger, n int) ([]time.Duration, error) {
	echo := sub.Unary(echoHandler).RawPayload(payload).Instance(owner.InstanceID())
	latencies := make([]time.Duration, 0, n)
	for i := range n {
		cctx, cancel := context.WithTimeout(ctx, roundTimeout)
		start := time.Now()
		out, err := echo.Send(cctx)
		took := time.Since(start)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("call %d of %d: %w", i+1, n, err)
		}
		if len(out) != len(payload) {
			return nil, fmt.Errorf("call %d of %d: sent %d bytes, got %d back", i+1, n, len(payload), len(out))
		}
		latencies = append(latencies, took)
	}
	slices.Sort(latencies)
	return latencies, nil
}

func report(w io.Writer, cfg config, await, unary []time.Duration) {
	micros := func(d time.Duration) string { return fmt.Sprintf("%8.1f µs", float64(d)/float64(time.Microsecond)) }
	line := func(name string, sorted []time.Duration, what string) {
		fmt.Fprintf(w, "%-13s p50 %s  p99 %s  (%s)\n", name, micros(percentile(sorted, 50)), micros(percentile(sorted, 99)), what)
	}
	fmt.Fprintf(w, "two instances in one process, tcp on the loopback: %d rounds each (after %d warm-up)\n", cfg.rounds, cfg.warmup)
	line("remote await", await, "Trigger on the owner until Wait returns on the subscriber")
	line("unary call", unary, "round trip, subscriber to owner and back")
}

// percentile returns the p-th percentile (0 to 100) of sorted by the
// nearest-rank method: the smallest value that at least p% of the values
// do not exceed. It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted)) / 100))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
