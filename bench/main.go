// Command bench measures velo against its peers in the same run: a plain
// Go TCP ping-pong (the floor), net/rpc, grpc-go unary with raw bytes, and
// NATS core request/reply and publish/subscribe through a nats-server;
// velo's Unary, TypedUnary, AMSync and AMSend over each of its transports
// (tcp, uds, http, h2c, grpc, nats).
//
// Each server runs in a child process of its own (this binary started
// again with a hidden flag), the NATS server too; the clients run here.
// Three measurements, for each payload size:
//
//   - latency: round trips one at a time: p50, p90, p99, max;
//   - concurrent: 1, 16 and 64 calls in flight: calls/s and p99;
//   - stream: one-way messages (AMSend, NATS publish, raw TCP frames),
//     counted as received by the server: messages/s.
//
// Repetitions are interleaved between the systems, so that noise from the
// machine hits them alike; the report gives medians across repetitions
// with their min and max. By default (on Linux) the servers and the client
// are pinned to one CPU: see pin.go for why, and -pin for the other
// placements.
//
//	go run -C bench . [-quick] [-systems ...] [-transports ...] [-modes ...] [-payloads ...] [-reps 3] [-out results]
//	go run -C bench . -mode inflight [-calls 100000]
//	go run -C bench . -mode mesh [-instances 64]
//	go run -C bench [-tags ucx] . -mode large [-size 64MiB] [-reps 5]
//
// bench is a module of its own (its chart library stays out of velo's
// go.mod), so it runs from its folder: relative paths in -out and
// -cpuprofile are relative to bench/.
//
// It prints the machine and Markdown tables, and writes the same data to
// <out>/bench.csv and a chart to <out>/bench.png.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
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
	rounds    int // measured calls per system per repetition, for payloads up to 4 KiB
	warmup    int // unmeasured calls before each measured batch
	reps      int
	payloads  []int // bytes
	modes     []string
	inFlight  []int // calls in flight in the concurrent mode
	out       string
	pin       string // pinNone, pinSame or pinSplit
	chart     bool
	systems   []System
	program   string // programSuite or programInflight
	calls     int    // -mode inflight: calls in flight
	largeSize int    // -mode large: bytes per echo
	reuse     bool   // -mode large: the echoes' memory is reused (ReusePayload, ReleasePayload)
	instances int    // -mode mesh: instances in the service
	serve     string // non-empty: be the server process of this kind
	profile   string // non-empty: write CPU profiles of every process here
}

// The programs -mode selects.
const (
	programSuite    = "suite"
	programInflight = "inflight"
	programMesh     = "mesh"
	programLarge    = "large"
)

// serveFlag makes the binary a server process; it is not in the usage.
const serveFlag = "serve"

// streamFactor: a stream measurement sends this many times -rounds
// messages (and warms up with as many times -warmup), one-way messages
// being much cheaper than round trips: at 32 B, 50 000 messages take tens
// of milliseconds, where 8 000 took so few that one garbage collection or
// preemption could halve a figure.
const streamFactor = 25

// maxPayload bounds -payloads: what every system carries in one message
// (the NATS server is configured for 8 MiB).
const maxPayload = 4 << 20

// quickArgs are what -quick sets, unless the same flag is given: enough
// for every system and mode to run once, in a few seconds.
var quickArgs = map[string]string{
	"rounds":      "200",
	"warmup":      "20",
	"reps":        "1",
	"payloads":    "32",
	"concurrency": "1,16",
	"chart":       "false",
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.rounds, "rounds", 2000, "measured calls per system per repetition, for payloads up to 4 KiB; fewer for larger ones (as many bytes as with 4 KiB, at least 100); a stream sends 25 times as many messages")
	fs.IntVar(&cfg.warmup, "warmup", 200, "unmeasured calls before each measured batch, scaled like -rounds")
	fs.IntVar(&cfg.reps, "reps", 5, "repetitions, interleaved between the systems")
	payload := fs.Int("payload", 32, "one payload size in bytes (the same as -payloads with one size)")
	payloads := fs.String("payloads", "32,1KiB,64KiB,1MiB", "comma-separated payload sizes (bytes, or with a KiB or MiB suffix)")
	modes := fs.String("modes", strings.Join(allModes, ","), "comma-separated measurements: "+strings.Join(allModes, ", "))
	inFlight := fs.String("concurrency", "1,16,64", "comma-separated numbers of calls in flight, for the concurrent mode")
	names := fs.String("systems", "", "comma-separated systems or families (default: all but the *-inline ones): "+familyNames())
	transports := fs.String("transports", "", "comma-separated velo transports (default: all): "+strings.Join(veloTransports, ", "))
	quick := fs.Bool("quick", false, "a short run for smoke tests: "+quickUsage())
	fs.StringVar(&cfg.out, "out", "results", "folder for bench.csv and bench.png (created if missing; relative to bench/)")
	fs.StringVar(&cfg.pin, "pin", defaultPin, "CPU placement: "+pinSame+" (servers and client on one CPU), "+pinSplit+" (servers on one CPU, client on another), "+pinNone+" (the scheduler's) or "+pinProcess+" (servers in the client's process, as go test -bench runs them)")
	fs.BoolVar(&cfg.chart, "chart", true, "draw bench.png")
	fs.StringVar(&cfg.program, "mode", programSuite, "what to run: "+programSuite+" (the comparison), "+programInflight+" (client heap per call pending on a slow handler), "+programMesh+" (one service of -instances instances calling each other) or "+programLarge+" (unary echoes of -size bytes over each velo transport that carries them)")
	largeSize := fs.String("size", "64MiB", "-mode large: the payload of each echo")
	fs.BoolVar(&cfg.reuse, "reuse", true, "-mode large: velo's echo handler reuses its payloads' memory (ReusePayload) and the client hands each echoed payload back (ReleasePayload); false: both own them")
	fs.IntVar(&cfg.instances, "instances", 64, "-mode mesh: instances in the service")
	fs.IntVar(&cfg.calls, "calls", 100000, "-mode inflight: calls in flight at once")
	fs.StringVar(&cfg.profile, "cpuprofile", "", "folder for CPU profiles: client.pprof, and one per server process named after it")
	fs.StringVar(&cfg.serve, serveFlag, "", "internal: run as the server process of the named kind")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run -C bench . [flags]   (from the repository's root)")
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
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		for name, v := range quickArgs {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return cfg, err
				}
			}
		}
	}
	if sz, err := parseSizes(*largeSize); err != nil || len(sz) != 1 || sz[0] < 1 || sz[0] > 1<<30 {
		return cfg, fmt.Errorf("-size %q: want one size up to 1 GiB", *largeSize)
	} else {
		cfg.largeSize = sz[0]
	}
	if set["payload"] && set["payloads"] {
		return cfg, errors.New("-payload and -payloads both given")
	}
	switch {
	case cfg.rounds < 1:
		return cfg, fmt.Errorf("-rounds %d, want at least 1", cfg.rounds)
	case cfg.warmup < 0:
		return cfg, fmt.Errorf("-warmup %d, want at least 0", cfg.warmup)
	case cfg.reps < 1:
		return cfg, fmt.Errorf("-reps %d, want at least 1", cfg.reps)
	case cfg.pin != pinNone && cfg.pin != pinSame && cfg.pin != pinSplit && cfg.pin != pinProcess:
		return cfg, fmt.Errorf("-pin %q, want %s, %s, %s or %s", cfg.pin, pinNone, pinSame, pinSplit, pinProcess)
	case cfg.program != programSuite && cfg.program != programInflight && cfg.program != programMesh && cfg.program != programLarge:
		return cfg, fmt.Errorf("-mode %q, want %s, %s, %s or %s", cfg.program, programSuite, programInflight, programMesh, programLarge)
	case cfg.instances < 2:
		return cfg, fmt.Errorf("-instances %d, want at least 2", cfg.instances)
	case cfg.calls < 1 || cfg.calls > holdMailbox:
		return cfg, fmt.Errorf("-calls %d, want 1..%d", cfg.calls, holdMailbox)
	}
	var err error
	if set["payload"] {
		cfg.payloads = []int{*payload}
	} else if cfg.payloads, err = parseSizes(*payloads); err != nil {
		return cfg, fmt.Errorf("-payloads: %w", err)
	}
	for _, p := range cfg.payloads {
		if p < 0 || p > maxPayload {
			return cfg, fmt.Errorf("payload %d bytes, want 0..%d", p, maxPayload)
		}
	}
	for _, m := range splitList(*modes) {
		if !slices.Contains(allModes, m) {
			return cfg, fmt.Errorf("-modes: unknown mode %q (have %s)", m, strings.Join(allModes, ", "))
		}
		if !slices.Contains(cfg.modes, m) {
			cfg.modes = append(cfg.modes, m)
		}
	}
	if len(cfg.modes) == 0 {
		return cfg, errors.New("-modes: none given")
	}
	for _, f := range splitList(*inFlight) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 4096 {
			return cfg, fmt.Errorf("-concurrency: %q, want numbers 1..4096", f)
		}
		cfg.inFlight = append(cfg.inFlight, n)
	}
	if len(cfg.inFlight) == 0 {
		return cfg, errors.New("-concurrency: none given")
	}
	cfg.systems, err = selectSystems(*names, *transports)
	return cfg, err
}

func quickUsage() string {
	keys := make([]string, 0, len(quickArgs))
	for k := range quickArgs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "-%s %s", k, quickArgs[k])
	}
	return b.String()
}

// parseSizes reads "32,1KiB,64k,1MiB" as bytes.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		num, mult := strings.ToLower(f), 1
		for _, u := range []struct {
			suffix string
			mult   int
		}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}} {
			if strings.HasSuffix(num, u.suffix) {
				num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
				break
			}
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("size %q: want bytes, or a number with KiB or MiB", f)
		}
		out = append(out, n*mult)
	}
	if len(out) == 0 {
		return nil, errors.New("no size given")
	}
	return out, nil
}

// sizeString writes a size the way the report shows it: 32 B, 1 KiB, 1 MiB.
func sizeString(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.profile == "" {
		cfg.profile = os.Getenv(profileEnv)
	}
	if cfg.profile != "" {
		// The children inherit the folder through the environment.
		if err := os.Setenv(profileEnv, cfg.profile); err != nil {
			return err
		}
		name := "client"
		if cfg.serve != "" {
			name = cfg.serve
		}
		stop, err := startProfile(cfg.profile, name)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.serve != "" {
		kind, ok := findServerKind(cfg.serve)
		if !ok {
			return fmt.Errorf("-%s: unknown server %q", serveFlag, cfg.serve)
		}
		return runChild(kind, envFromProcess(), stdin, stdout)
	}
	switch cfg.program {
	case programInflight:
		return runInflight(cfg, stdout, stderr)
	case programMesh:
		return runMesh(cfg, stdout)
	case programLarge:
		return runLarge(cfg, stdout, stderr)
	}
	return runSuite(cfg, stdout, stderr)
}

// contender is one system under measurement: its server process, the
// clients connected to it (one, or one per worker for a PerWorker system)
// and what each measurement found.
type contender struct {
	sys     System
	addr    string
	clients []Client
	samples map[cell][]sample
}

// cell is one measurement condition, which every system that supports it
// is measured under, interleaved.
type cell struct {
	mode     string
	inFlight int // calls in flight; 1 for latency and stream
	payload  int
}

// fleet is the set of server processes of a run, or with -pin process
// the servers running in this process.
type fleet struct {
	children map[string]*child // by server kind
	local    map[string]Server // by server kind, -pin process
	env      env
}

// addr is the address of the server of a kind.
func (f *fleet) addr(kind string) string {
	if s := f.local[kind]; s != nil {
		return s.Addr()
	}
	return f.children[kind].addr
}

// startFleet starts the server processes that the systems need, the NATS
// server first when one of them goes through it.
func startFleet(exe string, systems []System, inProcess bool, stderr io.Writer) (*fleet, error) {
	f := &fleet{children: make(map[string]*child), local: make(map[string]Server)}
	var kinds []serverKind
	needNATS := false
	for _, s := range systems {
		k, ok := findServerKind(s.Server)
		if !ok {
			return f, fmt.Errorf("%s: no server %q", s.Name, s.Server)
		}
		if !slices.ContainsFunc(kinds, func(o serverKind) bool { return o.name == k.name }) {
			kinds = append(kinds, k)
			needNATS = needNATS || k.nats
		}
	}
	if needNATS {
		k, _ := findServerKind(natsServerName)
		kinds = append([]serverKind{k}, kinds...)
	}
	for _, k := range kinds {
		if inProcess {
			s, err := k.serve(context.Background(), f.env)
			if err != nil {
				return f, fmt.Errorf("%s: %w", k.name, err)
			}
			f.local[k.name] = s
			if k.name == natsServerName {
				f.env.natsURL = s.Addr()
			}
			continue
		}
		cmd := exec.Command(exe, "-"+serveFlag, k.name)
		cmd.Env = append(os.Environ(), natsURLEnv+"="+f.env.natsURL)
		ch, err := startChild(k.name, cmd, stderr)
		if err != nil {
			return f, err
		}
		f.children[k.name] = ch
		if k.name == natsServerName {
			f.env.natsURL = ch.addr
		}
	}
	return f, nil
}

// stop stops the server processes, the NATS server last.
func (f *fleet) stop() error {
	var err error
	for name, ch := range f.children {
		if name != natsServerName {
			err = errors.Join(err, ch.stop())
		}
	}
	for name, s := range f.local {
		if name != natsServerName {
			err = errors.Join(err, s.Close())
		}
	}
	if ch := f.children[natsServerName]; ch != nil {
		err = errors.Join(err, ch.stop())
	}
	if s := f.local[natsServerName]; s != nil {
		err = errors.Join(err, s.Close())
	}
	return err
}

// measureLimit bounds one measurement: a system that hangs fails the run
// instead of stalling it.
const measureLimit = 5 * time.Minute

func runSuite(cfg config, stdout, stderr io.Writer) (err error) {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary to start servers: %w", err)
	}
	// Before any server starts: the TLS servers inherit the certificate.
	if _, err := benchTLS(); err != nil {
		return fmt.Errorf("making the TLS certificate: %w", err)
	}
	place, err := planPlacement(cfg.pin)
	if err != nil {
		return err
	}
	ctx := context.Background()
	began := time.Now()

	if err := place.beforeServers(); err != nil {
		return err
	}
	fl, err := startFleet(exe, cfg.systems, cfg.pin == pinProcess, stderr)
	defer func() { err = errors.Join(err, fl.stop()) }()
	if err != nil {
		return err
	}
	if err := place.afterServers(); err != nil {
		return err
	}

	var cs []*contender
	defer func() {
		for _, c := range cs {
			for _, cl := range c.clients {
				err = errors.Join(err, cl.Close())
			}
		}
	}()
	for _, sys := range cfg.systems {
		c := &contender{sys: sys, addr: fl.addr(sys.Server), samples: make(map[cell][]sample)}
		cs = append(cs, c)
		cl, err := sys.Dial(ctx, fl.env, c.addr)
		if err != nil {
			return fmt.Errorf("%s: connect: %w", sys.Name, err)
		}
		c.clients = append(c.clients, cl)
	}

	cells := plan(cfg)
	total := 0
	for _, ce := range cells {
		total += len(contendersFor(cs, ce.mode)) * cfg.reps
	}
	done := 0
	for _, ce := range cells {
		payload := makePayload(ce.payload)
		group := contendersFor(cs, ce.mode)
		// Repetition r starts with system r mod n, so that no system
		// always runs first (or right after the same neighbour).
		for rep := range cfg.reps {
			for k := range group {
				c := group[(rep+k)%len(group)]
				s, err := measureOne(ctx, fl.env, cfg, c, ce, payload)
				if err != nil {
					return fmt.Errorf("%s, %s: repetition %d: %w", c.sys.Name, ce, rep+1, err)
				}
				c.samples[ce] = append(c.samples[ce], s)
				done++
				fmt.Fprintf(stderr, "[%d/%d %s] %s rep %d/%d  %-26s %s\n",
					done, total, time.Since(began).Round(time.Second), ce, rep+1, cfg.reps, c.sys.Name, s)
			}
		}
	}

	res := collect(cells, cs)
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "run: %s; %d repetitions interleaved; up to %d measured calls per system and repetition (after %d warm-up), fewer for payloads over 4 KiB; %s; medians across repetitions, (min–max); took %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cfg.reps, cfg.rounds, cfg.warmup, place, time.Since(began).Round(time.Second))
	writeTables(stdout, res)
	if noisy := res.noisy(); len(noisy) > 0 {
		const shown = 6
		list := strings.Join(noisy[:min(shown, len(noisy))], ", ")
		if len(noisy) > shown {
			list += fmt.Sprintf(" and %d more", len(noisy)-shown)
		}
		fmt.Fprintf(stdout, "\nnote: %d of %d figures varied more than %.1f× between repetitions (column noisy in %s): %s; compare those with care.",
			len(noisy), len(res.rows), noisySpread, csvFile, list)
		if cfg.pin == pinNone {
			fmt.Fprintf(stdout, " On a machine with few CPUs this is usually the scheduler moving the processes between one CPU and two; -pin %s fixes the placement.", pinSame)
		}
		fmt.Fprintln(stdout)
	}
	path, err := writeCSV(cfg.out, cfg, res)
	if err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	fmt.Fprintf(stdout, "\nwrote %s", path)
	if cfg.chart {
		chart, err := drawChart(cfg.out, res)
		if err != nil {
			return fmt.Errorf("drawing the chart: %w", err)
		}
		if chart != "" {
			fmt.Fprintf(stdout, " and %s", chart)
		}
	}
	fmt.Fprintln(stdout)
	return nil
}

// plan lists the cells of a run: payload by payload, each mode, each
// number of calls in flight.
func plan(cfg config) []cell {
	var cells []cell
	for _, p := range cfg.payloads {
		for _, m := range cfg.modes {
			if m == modeConcurrent {
				for _, n := range cfg.inFlight {
					cells = append(cells, cell{mode: m, inFlight: n, payload: p})
				}
				continue
			}
			cells = append(cells, cell{mode: m, inFlight: 1, payload: p})
		}
	}
	return cells
}

func (c cell) String() string {
	if c.mode == modeConcurrent {
		return fmt.Sprintf("%s %d %s", c.mode, c.inFlight, sizeString(c.payload))
	}
	return fmt.Sprintf("%s %s", c.mode, sizeString(c.payload))
}

func contendersFor(cs []*contender, mode string) []*contender {
	var out []*contender
	for _, c := range cs {
		if c.sys.has(mode) {
			out = append(out, c)
		}
	}
	return out
}

// makePayload returns n bytes of a pattern that no compression would
// shrink much.
func makePayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

// measureOne takes one sample of one system in one cell.
func measureOne(ctx context.Context, e env, cfg config, c *contender, ce cell, payload []byte) (sample, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchdog := time.AfterFunc(measureLimit, cancel)
	defer watchdog.Stop()

	rounds := scaled(cfg.rounds, ce.payload, 100)
	warmup := scaled(cfg.warmup, ce.payload, 10)
	switch ce.mode {
	case modeLatency:
		return measureLatency(ctx, c.clients[0].(RoundTripper), payload, warmup, make([]time.Duration, rounds))
	case modeConcurrent:
		workers := make([]RoundTripper, ce.inFlight)
		for i := range workers {
			if c.sys.PerWorker {
				for len(c.clients) <= i {
					cl, err := c.sys.Dial(ctx, e, c.addr)
					if err != nil {
						return sample{}, fmt.Errorf("connect worker %d: %w", len(c.clients), err)
					}
					c.clients = append(c.clients, cl)
				}
				workers[i] = c.clients[i].(RoundTripper)
			} else {
				workers[i] = c.clients[0].(RoundTripper)
			}
		}
		return measureConcurrent(ctx, workers, payload, max(warmup, ce.inFlight), max(rounds, 4*ce.inFlight))
	case modeStream:
		n := scaled(streamFactor*cfg.rounds, ce.payload, 100)
		return measureStream(ctx, c.clients[0].(Streamer), payload, scaled(streamFactor*cfg.warmup, ce.payload, 0), n)
	}
	return sample{}, fmt.Errorf("unknown mode %q", ce.mode)
}

// String is the progress line's view of a sample.
func (s sample) String() string {
	if s.p50 == 0 {
		return fmt.Sprintf("%10.0f msgs/s", s.rate)
	}
	return fmt.Sprintf("p50 %7s µs  p99 %8s µs  %9.0f calls/s", us(s.p50), us(s.p99), s.rate)
}
