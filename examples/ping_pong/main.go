// Command ping_pong measures the round-trip latency of velo's unary calls
// between two processes on one machine.
//
// It starts a copy of itself in a child process as the server, whose
// handler "ping" echoes its payload back. The parent then sends -rounds
// requests one after the other, never two at once, and reports latency
// percentiles, the mean and the call rate. Since only one call is in
// flight, each number is the cost of one full round trip: encoding, the
// transport, the loopback network, dispatch to the handler and back. It is
// not throughput under load. The -warmup calls before, not measured, open
// the connection and let both processes settle.
//
// Usage:
//
//	go run ./examples/ping_pong [-rounds 5000] [-warmup 500] [-payload 32] [-transport tcp] [-inline] [-tls]
//
// -transport is tcp, uds (a Unix domain socket), http (HTTP/1.1) or h2c
// (HTTP/2 without TLS). grpc, nats and ucx are there when the program is
// built with their tags, so that a plain build links neither gRPC nor NATS
// and needs no C library:
//
//	go run -tags grpc ./examples/ping_pong -transport grpc
//	go run -tags nats ./examples/ping_pong -transport nats
//	go run -tags ucx ./examples/ping_pong -transport ucx [-ucx-tls tcp,sm,self]
//
// ucx needs libucx (apt-get install -y libucx-dev); -ucx-tls picks UCX's
// transports: tcp (the default) or tcp,sm,self for shared memory.
//
// nats connects to the server at $VELO_NATS_URL; when it is empty, the
// program starts an embedded nats-server on 127.0.0.1 for the run.
//
// -tls runs tcp, http (HTTPS) or grpc under mutual TLS, with a certificate
// authority and a certificate made in memory at start (see tls.go).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport"
	velohttp "github.com/velo-messenger/velo/transport/http"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

const (
	serveEnv     = "VELO_PING_PONG_SERVE" // set in the child's environment: run as the server
	callTimeout  = 10 * time.Second       // bounds every call, so that nothing hangs
	startTimeout = 10 * time.Second       // for the child to print its peer.Info
	stopTimeout  = 5 * time.Second        // for a messenger to shut down, or the child to exit
)

// transports maps each -transport value to a constructor for it. Supporting
// another transport is one more entry here; the files behind build tags
// (transport_grpc.go, transport_nats.go) add theirs in init.
// A constructor gets the TLS config of -tls, nil without it; tlsTransports
// lists those that take one.
var transports = map[string]func(*tls.Config) transport.Transport{
	"tcp": func(c *tls.Config) transport.Transport { return tcp.New(tcp.Options{Listen: "127.0.0.1:0", TLS: c}) },
	"uds": func(*tls.Config) transport.Transport { return uds.New(uds.Options{}) },
	"http": func(c *tls.Config) transport.Transport {
		return velohttp.New(velohttp.Options{Protocol: velohttp.HTTP1, TLS: c})
	},
	"h2c": func(*tls.Config) transport.Transport { return velohttp.New(velohttp.Options{Protocol: velohttp.H2C}) },
}

var tlsTransports = []string{"tcp", "http", "grpc"}

// taggedTransports are the transports compiled in only with a build tag of
// their name, so that the error for an unknown transport can say how to get
// them.
var taggedTransports = []string{"grpc", "nats", "ucx"}

// prepare holds, for the transports that need one, what the parent sets up
// before the server starts (a NATS server to talk through). It returns how
// to tear it down, which runs after the server process has exited.
var prepare = map[string]func() (stop func(), err error){}

// config holds the command-line flags.
type config struct {
	rounds, warmup, payload int
	transport               string
	inline, tls             bool
	serve                   bool        // -serve: only the server, for other clients (the velo command)
	tlsConfig               *tls.Config // -tls: made by the parent, read by the child
}

func main() {
	cfg := parseFlags()
	err := cfg.validate()
	if err == nil {
		if cfg.serve && cfg.tls {
			err = errors.New("-serve does not take -tls: its certificates are made by the parent")
		} else if cfg.serve {
			err = serve(cfg)
		} else if os.Getenv(serveEnv) != "" {
			if cfg.tls {
				cfg.tlsConfig, err = childTLS()
			}
			if err == nil {
				err = serve(cfg)
			}
		} else {
			err = run(cfg)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ping_pong:", err)
		os.Exit(1)
	}
}

func parseFlags() config {
	var c config
	flag.IntVar(&c.rounds, "rounds", 5000, "number of measured round trips")
	flag.IntVar(&c.warmup, "warmup", 500, "number of round trips before measuring, not measured")
	flag.IntVar(&c.payload, "payload", 32, "request payload `bytes`, echoed back")
	flag.StringVar(&c.transport, "transport", "tcp", "transport to use: "+supportedTransports())
	flag.BoolVar(&c.inline, "inline", false, "run the handler inline on the receive goroutine instead of a goroutine per call")
	flag.BoolVar(&c.tls, "tls", false, "mutual TLS, with a certificate authority made in memory at start (tcp, http, grpc)")
	flag.BoolVar(&c.serve, "serve", false, "run only the server: print its peer info (JSON) and answer \"ping\" until interrupted or stdin closes, for other clients such as `velo bench`")
	flag.Parse()
	return c
}

func (c config) validate() error {
	switch {
	case transports[c.transport] == nil:
		return fmt.Errorf("unknown transport %q (supported: %s%s)", c.transport, supportedTransports(), missingTags())
	case c.tls && !slices.Contains(tlsTransports, c.transport):
		return fmt.Errorf("-tls works with %s, not %s", strings.Join(tlsTransports, ", "), c.transport)
	case c.rounds < 1:
		return fmt.Errorf("-rounds is %d, want at least 1", c.rounds)
	case c.warmup < 0 || c.payload < 0:
		return errors.New("-warmup and -payload must not be negative")
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %q", flag.Args())
	}
	return nil
}

func supportedTransports() string {
	return strings.Join(slices.Sorted(maps.Keys(transports)), ", ")
}

// missingTags tells how to build in the tagged transports this binary
// lacks: "; grpc needs -tags grpc, nats needs -tags nats".
func missingTags() string {
	var hints []string
	for _, name := range taggedTransports {
		if transports[name] == nil {
			hints = append(hints, fmt.Sprintf("%s needs -tags %s", name, name))
		}
	}
	if len(hints) == 0 {
		return ""
	}
	return "; " + strings.Join(hints, ", ")
}

func newMessenger(ctx context.Context, cfg config) (*velo.Messenger, error) {
	return velo.NewBuilder().AddTransport(transports[cfg.transport](cfg.tlsConfig)).Build(ctx)
}

func shutdown(m *velo.Messenger) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return m.Shutdown(ctx)
}

// run is the parent: it starts the server, measures, and reports.
func run(cfg config) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if p := prepare[cfg.transport]; p != nil {
		teardown, err := p()
		if err != nil {
			return err
		}
		// Deferred first, so it runs last: after the server has exited.
		defer teardown()
	}
	var childEnv []string
	if cfg.tls {
		var blocks string
		if cfg.tlsConfig, blocks, err = newTLS(); err != nil {
			return err
		}
		childEnv = append(childEnv, tlsEnv+"="+blocks)
	}
	srv, err := startServer(cfg, childEnv...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	m, err := newMessenger(ctx, cfg)
	if err != nil {
		return err
	}
	// Deferred calls run last-in first-out: the client shuts down before
	// the server is told to stop.
	defer func() { err = errors.Join(err, shutdown(m)) }()
	if err := m.RegisterPeer(srv.info); err != nil {
		return fmt.Errorf("registering the server: %w", err)
	}

	payload := bytes.Repeat([]byte{'x'}, cfg.payload)
	ping := m.Unary("ping").RawPayload(payload).Instance(srv.info.ID)
	for i := range cfg.warmup {
		if _, err := roundTrip(ctx, ping, payload); err != nil {
			return fmt.Errorf("warm-up call %d: %w", i+1, err)
		}
	}
	latencies, elapsed, err := measure(ctx, ping, payload, cfg.rounds)
	if err != nil {
		return err
	}
	report(os.Stdout, cfg, latencies, elapsed)
	return nil
}

// roundTrip makes one call and checks the echo. Only the Send is timed.
func roundTrip(ctx context.Context, ping velo.UnaryBuilder, want []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	start := time.Now()
	got, err := ping.Send(ctx)
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(got, want) {
		return 0, fmt.Errorf("sent %d bytes, got %d different bytes back", len(want), len(got))
	}
	return took, nil
}

// measure makes rounds calls one after the other and returns the latency
// of each and the time they took in all.
func measure(ctx context.Context, ping velo.UnaryBuilder, payload []byte, rounds int) ([]time.Duration, time.Duration, error) {
	bar := newProgressBar(rounds)
	defer bar.finish()
	latencies := make([]time.Duration, 0, rounds)
	start := time.Now()
	for i := range rounds {
		took, err := roundTrip(ctx, ping, payload)
		if err != nil {
			return nil, 0, fmt.Errorf("call %d of %d: %w", i+1, rounds, err)
		}
		latencies = append(latencies, took)
		bar.set(i + 1)
	}
	return latencies, time.Since(start), nil
}

func report(w io.Writer, cfg config, latencies []time.Duration, elapsed time.Duration) {
	slices.Sort(latencies)
	var sum time.Duration
	for _, d := range latencies {
		sum += d
	}
	mode := "spawn"
	if cfg.inline {
		mode = "inline"
	}
	micros := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

	tlsNote := ""
	if cfg.tls {
		tlsNote = ", mutual TLS"
	}
	fmt.Fprintf(w, "transport  %s (%s handler%s)\n", cfg.transport, mode, tlsNote)
	fmt.Fprintf(w, "payload    %d bytes\n", cfg.payload)
	fmt.Fprintf(w, "rounds     %d (after %d warm-up)\n", len(latencies), cfg.warmup)
	fmt.Fprintf(w, "p50        %s\n", micros(percentile(latencies, 50)))
	fmt.Fprintf(w, "p90        %s\n", micros(percentile(latencies, 90)))
	fmt.Fprintf(w, "p99        %s\n", micros(percentile(latencies, 99)))
	fmt.Fprintf(w, "max        %s\n", micros(latencies[len(latencies)-1]))
	fmt.Fprintf(w, "mean       %s\n", micros(sum/time.Duration(len(latencies))))
	fmt.Fprintf(w, "calls/s    %.0f\n", float64(len(latencies))/elapsed.Seconds())
}

// percentile returns the p-th percentile (0 to 100) of sorted by the
// nearest-rank method: the smallest value that at least p% of the values
// do not exceed. It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// p*n/100 rather than p/100*n: 99*100/100 is exactly 99, while
	// 0.99*100 is not, and would round up to the next rank.
	rank := int(math.Ceil(p * float64(len(sorted)) / 100))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
