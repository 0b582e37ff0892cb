// Command bench measures velo's unary round trip over TCP against the
// floor, a plain Go TCP ping-pong with length-prefixed frames, in the same
// run. Each server runs in a child process of its own (this binary started
// again with a hidden flag); the clients run here, one call at a time.
// Repetitions are interleaved between the systems, so that noise from the
// machine hits them alike. By default (on Linux) the servers and the client
// are pinned to one CPU: see pin.go for why, and -pin for the other
// placements.
//
//	go run ./bench [-rounds 20000] [-warmup 2000] [-reps 5] [-payload 32] [-out bench/results] [-pin same|split|none]
//
// It prints the machine and a Markdown table of the medians across
// repetitions, and writes the same to <out>/latency.csv.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	rounds  int // measured round trips per system per repetition
	warmup  int // unmeasured round trips before each measured batch
	reps    int
	payload int // bytes
	out     string
	pin     string // pinNone, pinSame or pinSplit
	systems []System
	serve   string // non-empty: be the server process of this system
}

// serveFlag makes the binary a server process; it is not in the usage.
const serveFlag = "serve"

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.rounds, "rounds", 20000, "measured round trips per system per repetition")
	fs.IntVar(&cfg.warmup, "warmup", 2000, "unmeasured round trips before each measured batch")
	fs.IntVar(&cfg.reps, "reps", 5, "repetitions, interleaved between the systems")
	fs.IntVar(&cfg.payload, "payload", 32, "payload size in bytes")
	fs.StringVar(&cfg.out, "out", "bench/results", "folder for latency.csv (created if missing)")
	fs.StringVar(&cfg.pin, "pin", defaultPin, "CPU placement: "+pinSame+" (servers and client on one CPU), "+pinSplit+" (servers on one CPU, client on another) or "+pinNone+" (the scheduler's)")
	names := fs.String("systems", "", "comma-separated systems to run (default: all: "+systemNames(allSystems())+")")
	fs.StringVar(&cfg.serve, serveFlag, "", "internal: run as the server process of the named system")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./bench [flags]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == serveFlag {
				return
			}
			fmt.Fprintf(fs.Output(), "  -%s\n    \t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case cfg.rounds < 1:
		return cfg, fmt.Errorf("-rounds %d, want at least 1", cfg.rounds)
	case cfg.warmup < 0:
		return cfg, fmt.Errorf("-warmup %d, want at least 0", cfg.warmup)
	case cfg.reps < 1:
		return cfg, fmt.Errorf("-reps %d, want at least 1", cfg.reps)
	case cfg.payload < 0 || cfg.payload > floorMaxFrame:
		return cfg, fmt.Errorf("-payload %d, want 0..%d", cfg.payload, floorMaxFrame)
	case cfg.pin != pinNone && cfg.pin != pinSame && cfg.pin != pinSplit:
		return cfg, fmt.Errorf("-pin %q, want %s, %s or %s", cfg.pin, pinNone, pinSame, pinSplit)
	}
	var err error
	cfg.systems, err = lookupSystems(*names)
	return cfg, err
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.serve != "" {
		sys := findSystem(allSystems(), cfg.serve)
		if sys == nil {
			return fmt.Errorf("-%s: unknown system %q", serveFlag, cfg.serve)
		}
		return runChild(sys, stdin, stdout)
	}
	return runBench(cfg, stdout, stderr)
}

// contender is one system under measurement: its server process, the
// client connected to it, and what each repetition measured.
type contender struct {
	sys     System
	child   *child
	client  Client
	samples []sample
}

func runBench(cfg config, stdout, stderr io.Writer) (err error) {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary to start servers: %w", err)
	}
	place, err := planPlacement(cfg.pin)
	if err != nil {
		return err
	}
	ctx := context.Background()
	payload := make([]byte, cfg.payload)
	for i := range payload {
		payload[i] = byte(i % 251)
	}

	var cs []*contender
	defer func() {
		for _, c := range cs {
			if c.client != nil {
				err = errors.Join(err, c.client.Close())
			}
			err = errors.Join(err, c.child.stop())
		}
	}()
	if err := place.beforeServers(); err != nil {
		return err
	}
	for _, sys := range cfg.systems {
		ch, err := startChild(sys.Name(), exec.Command(exe, "-"+serveFlag, sys.Name()), stderr)
		if err != nil {
			return err
		}
		cs = append(cs, &contender{sys: sys, child: ch})
	}
	if err := place.afterServers(); err != nil {
		return err
	}
	for _, c := range cs {
		if c.client, err = c.sys.Dial(ctx, c.child.addr, payload); err != nil {
			return fmt.Errorf("%s: connect: %w", c.sys.Name(), err)
		}
	}

	// Repetition r starts with system r mod n, so that no system always
	// runs first (or right after the same neighbour).
	lat := make([]time.Duration, cfg.rounds)
	for rep := range cfg.reps {
		for k := range cs {
			c := cs[(rep+k)%len(cs)]
			s, err := measure(ctx, c.client, cfg.warmup, lat)
			if err != nil {
				return fmt.Errorf("%s: repetition %d: %w", c.sys.Name(), rep+1, err)
			}
			c.samples = append(c.samples, s)
			fmt.Fprintf(stderr, "rep %d/%d  %-18s p50 %6s µs  p99 %7s µs  %8.0f calls/s\n",
				rep+1, cfg.reps, c.sys.Name(), us(s.p50), us(s.p99), s.rate)
		}
	}

	sums := make([]summary, len(cs))
	for i, c := range cs {
		sums[i] = aggregate(c.sys.Name(), c.samples)
	}
	setRatios(sums)
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "unary round trip over TCP loopback, %d B payload: %d measured calls (after %d warm-up) per system per repetition, %d repetitions interleaved; servers in child processes, one sequential client; %s; medians across repetitions.\n\n",
		cfg.payload, cfg.rounds, cfg.warmup, cfg.reps, place)
	writeTable(stdout, sums)
	if noisy := noisySystems(sums); len(noisy) > 0 {
		fmt.Fprintf(stdout, "\nnote: p50 of %s varied more than %.1f× across repetitions: compare with care.",
			strings.Join(noisy, ", "), noisySpread)
		if cfg.pin == pinNone {
			fmt.Fprintf(stdout, " On a machine with few CPUs this is usually the scheduler moving the processes between one CPU and two; -pin %s fixes the placement.", pinSame)
		}
		fmt.Fprintln(stdout)
	}
	path, err := writeCSV(cfg.out, cfg, sums)
	if err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", path)
	return nil
}

// measure runs warmup round trips, then len(lat) measured ones, and
// summarises them. Each latency is the time between the ends of two
// consecutive calls, so one clock read per call is all the overhead.
func measure(ctx context.Context, c Client, warmup int, lat []time.Duration) (sample, error) {
	for range warmup {
		if err := c.RoundTrip(ctx); err != nil {
			return sample{}, err
		}
	}
	// Start from a collected heap, so that garbage left by the previous
	// system is not charged to this one.
	runtime.GC()
	start := time.Now()
	prev := start
	for i := range lat {
		if err := c.RoundTrip(ctx); err != nil {
			return sample{}, err
		}
		now := time.Now()
		lat[i] = now.Sub(prev)
		prev = now
	}
	return summarize(lat, prev.Sub(start)), nil
}
