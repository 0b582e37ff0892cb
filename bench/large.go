package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/velo-messenger/velo"
)

// -mode large: unary echoes of one large payload (-size, 64 MiB by
// default) over each velo transport that carries frames that large (tcp,
// uds, and with -tags ucx, ucx and ucx-sm), server in a child process, no
// pinning. Each transport gets one warm-up echo, then -reps measured ones,
// interleaved between the transports; the report gives each one's median
// and best round trip and the throughput of the median (bytes each way).

// largeTransports are the transports -mode large measures, when built in.
var largeTransports = []string{"tcp", "uds", "grpc", "ucx", "ucx-sm"}

// largeTimeout bounds one echo.
const largeTimeout = 2 * time.Minute

func runLarge(cfg config, stdout, stderr io.Writer) (err error) {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// Frames hold the payload and a little more; the servers inherit it.
	e := env{maxFrame: cfg.largeSize + 1<<20}
	if err := os.Setenv(maxFrameEnv, strconv.Itoa(e.maxFrame)); err != nil {
		return err
	}
	if !cfg.reuse {
		if err := os.Setenv(noReuseEnv, "1"); err != nil {
			return err
		}
	}
	ctx := context.Background()
	type run struct {
		name  string
		c     *veloConn    // nil for the floor
		floor RoundTripper // a peer: the plain TCP echo or grpc-go
		times []time.Duration
		small []time.Duration // small calls on the same connection during the large ones
		// smallCall makes one small call on the connection of the large
		// ones; nil: none (the floor's one socket carries one echo at a time).
		smallCall func(context.Context) error
	}
	var runs []*run
	defer func() {
		for _, r := range runs {
			if r.c != nil {
				err = errors.Join(err, r.c.Close())
			} else {
				err = errors.Join(err, r.floor.Close())
			}
		}
	}()
	for _, p := range []struct {
		name string
		dial func(context.Context, env, string) (Client, error)
	}{{floorName, dialFloor}, {grpcName, dialGRPC}} {
		ch, err := startChild(p.name, exec.Command(exe, "-"+serveFlag, p.name), stderr)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, ch.stop()) }()
		c, err := p.dial(ctx, e, ch.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		r := &run{name: p.name, floor: c.(RoundTripper)}
		if p.name == grpcName { // its calls share the HTTP/2 connection
			r.smallCall = func(ctx context.Context) error { return r.floor.RoundTrip(ctx, []byte("small")) }
		}
		runs = append(runs, r)
	}
	for _, t := range largeTransports {
		if !slices.Contains(veloTransports, t) {
			continue
		}
		name := veloServerFor(t)
		ch, err := startChild(name, exec.Command(exe, "-"+serveFlag, name), stderr)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, ch.stop()) }()
		c, err := dialVeloConn(ctx, t, e, ch.addr, velo.Options{})
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		r := &run{name: t, c: c}
		r.smallCall = func(ctx context.Context) error {
			_, err := c.m.Unary(echoHandler).RawPayload([]byte("small")).Instance(c.server).Send(ctx)
			return err
		}
		runs = append(runs, r)
	}
	payload := makePayload(cfg.largeSize)
	echo := func(r *run) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, largeTimeout)
		defer cancel()
		// Small calls go on the same connection meanwhile.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		if r.smallCall != nil {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := time.Now()
					if r.smallCall(ctx) != nil {
						return
					}
					r.small = append(r.small, time.Since(s))
				}
			})
		}
		start := time.Now()
		var err error
		if r.c == nil {
			err = r.floor.RoundTrip(ctx, payload)
		} else {
			var b []byte
			b, err = r.c.m.Unary(echoHandler).RawPayload(payload).Instance(r.c.server).Send(ctx)
			if err == nil && len(b) != len(payload) {
				err = fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(b), len(payload))
			}
			if cfg.reuse {
				r.c.m.ReleasePayload(b)
			}
		}
		d := time.Since(start)
		close(stop)
		wg.Wait()
		return d, err
	}
	for _, r := range runs {
		if _, err := echo(r); err != nil {
			return fmt.Errorf("%s: warm-up: %w", r.name, err)
		}
		r.small = r.small[:0]
	}
	for range cfg.reps {
		for _, r := range runs {
			d, err := echo(r)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			r.times = append(r.times, d)
		}
	}
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "unary echo of %s (server in a child process, unpinned), %d round trips each after one warm-up, interleaved; %s is a plain Go TCP echo of the same bytes; small calls run one at a time on the same connection during each velo and grpc-go echo; velo's payload memory %s:\n", sizeString(cfg.largeSize), cfg.reps, floorName, reuseText(cfg.reuse))
	fmt.Fprintf(stdout, "%-10s %12s %12s %14s %12s %12s %12s\n", "transport", "median", "best", "MB/s (median)", "small calls", "small p50", "small p99")
	for _, r := range runs {
		slices.Sort(r.times)
		med := r.times[len(r.times)/2]
		mbs := float64(2*cfg.largeSize) / med.Seconds() / 1e6
		fmt.Fprintf(stdout, "%-10s %12s %12s %14.0f", r.name, med.Round(time.Microsecond), r.times[0].Round(time.Microsecond), mbs)
		if len(r.small) > 0 {
			slices.Sort(r.small)
			fmt.Fprintf(stdout, " %12d %12s %12s", len(r.small), r.small[len(r.small)/2].Round(time.Microsecond), r.small[len(r.small)*99/100].Round(time.Microsecond))
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// reuseText tells how -mode large treats velo's payload memory.
func reuseText(reuse bool) string {
	if reuse {
		return "reused (ReusePayload on the server, ReleasePayload on the client)"
	}
	return "owned by the handler and the caller (-reuse=false)"
}
