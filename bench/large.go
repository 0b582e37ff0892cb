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
var largeTransports = []string{"tcp", "uds", "ucx", "ucx-sm"}

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
	ctx := context.Background()
	type run struct {
		name  string
		c     *veloConn
		times []time.Duration
	}
	var runs []*run
	defer func() {
		for _, r := range runs {
			err = errors.Join(err, r.c.Close())
		}
	}()
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
		runs = append(runs, &run{name: t, c: c})
	}
	payload := makePayload(cfg.largeSize)
	echo := func(r *run) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, largeTimeout)
		defer cancel()
		start := time.Now()
		b, err := r.c.m.Unary(echoHandler).RawPayload(payload).Instance(r.c.server).Send(ctx)
		d := time.Since(start)
		if err == nil && len(b) != len(payload) {
			err = fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(b), len(payload))
		}
		return d, err
	}
	for _, r := range runs {
		if _, err := echo(r); err != nil {
			return fmt.Errorf("%s: warm-up: %w", r.name, err)
		}
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
	fmt.Fprintf(stdout, "unary echo of %s (server in a child process, unpinned), %d round trips each after one warm-up, interleaved:\n", sizeString(cfg.largeSize), cfg.reps)
	fmt.Fprintf(stdout, "%-10s %12s %12s %14s\n", "transport", "median", "best", "MB/s (median)")
	for _, r := range runs {
		slices.Sort(r.times)
		med := r.times[len(r.times)/2]
		mbs := float64(2*cfg.largeSize) / med.Seconds() / 1e6
		fmt.Fprintf(stdout, "%-10s %12s %12s %14.0f\n", r.name, med.Round(time.Microsecond), r.times[0].Round(time.Microsecond), mbs)
	}
	return nil
}
