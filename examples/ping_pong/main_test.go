package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/testchild"
)

func TestPercentile(t *testing.T) {
	// upTo returns 1µs, 2µs, ..., nµs.
	upTo := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i+1) * time.Microsecond
		}
		return s
	}
	us := time.Microsecond
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value, p50", upTo(1), 50, 1 * us},
		{"one value, p99", upTo(1), 99, 1 * us},
		{"p0 is the minimum", upTo(10), 0, 1 * us},
		{"p50 of 10", upTo(10), 50, 5 * us},
		{"p90 of 10", upTo(10), 90, 9 * us},
		{"p99 of 10", upTo(10), 99, 10 * us},
		{"p100 is the maximum", upTo(10), 100, 10 * us},
		{"p50 of 4 takes the lower middle", upTo(4), 50, 2 * us},
		{"p51 of 4 moves up a rank", upTo(4), 51, 3 * us},
		{"p99 of 100 is exact, not rounded up", upTo(100), 99, 99 * us},
		{"p99 of 1000", upTo(1000), 99, 990 * us},
		{"p50 of 5 is the median", upTo(5), 50, 3 * us},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

// TestProgram builds the program and runs it end to end: parent and child
// process, real TCP on the loopback.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := testchild.Build(t)

	for _, mode := range []struct {
		name string
		args []string
	}{
		{"spawn", nil},
		{"inline", []string{"-inline"}},
		{"uds", []string{"-transport", "uds"}},
		{"http", []string{"-transport", "http"}},
		{"h2c", []string{"-transport", "h2c"}},
		{"tls", []string{"-tls"}},
		{"https", []string{"-tls", "-transport", "http"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			checkRun(t, bin, 200, mode.args...)
		})
	}

	t.Run("tls on a transport without it", func(t *testing.T) {
		_, stderr, err := testchild.Run(t, bin, "-tls", "-transport", "uds")
		if err == nil || !strings.Contains(stderr, "-tls works with tcp, http, grpc") {
			t.Errorf("-tls -transport uds: %v, stderr:\n%s", err, stderr)
		}
	})

	t.Run("unknown transport", func(t *testing.T) {
		_, stderr, err := testchild.Run(t, bin, "-transport", "carrier-pigeon")
		if err == nil {
			t.Fatal("ping_pong succeeded with an unknown transport")
		}
		if !strings.Contains(stderr, `"carrier-pigeon"`) || !strings.Contains(stderr, "supported: h2c, http, tcp, uds") {
			t.Errorf("stderr does not name the transport and the supported ones:\n%s", stderr)
		}
	})

	t.Run("tagged transport not built in", func(t *testing.T) {
		for _, name := range []string{"grpc", "nats", "ucx"} {
			_, stderr, err := testchild.Run(t, bin, "-transport", name)
			if err == nil {
				t.Fatalf("ping_pong built without tags ran -transport %s", name)
			}
			if !strings.Contains(stderr, name+" needs -tags "+name) {
				t.Errorf("stderr does not say how to build in %s:\n%s", name, stderr)
			}
		}
	})
}

// TestTaggedTransports builds the program with -tags grpc,nats and runs it
// over gRPC and over NATS; for NATS the program starts an embedded
// nats-server itself, since VELO_NATS_URL is unset.
func TestTaggedTransports(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := testchild.Build(t, "grpc", "nats")
	t.Setenv("VELO_NATS_URL", "")
	for _, name := range []string{"grpc", "nats"} {
		t.Run(name, func(t *testing.T) {
			checkRun(t, bin, 50, "-transport", name, "-warmup", "5")
		})
	}
}

// TestNoGRPCOrNATSByDefault checks that a program that uses the built-in
// transports links neither gRPC nor NATS: they come with their build tags
// only, so that a plain build does not carry them.
func TestNoGRPCOrNATSByDefault(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc") || strings.HasPrefix(pkg, "github.com/nats-io/") {
			t.Errorf("the default build depends on %s", pkg)
		}
	}
}

// checkRun runs bin for rounds measured calls (20 warm-up unless args say
// otherwise) and checks its report.
func checkRun(t *testing.T, bin string, rounds int, args ...string) {
	t.Helper()
	stdout, stderr, err := testchild.Run(t, bin, append([]string{"-rounds", strconv.Itoa(rounds), "-warmup", "20"}, args...)...)
	if err != nil {
		t.Fatalf("ping_pong: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if want := fmt.Sprintf("rounds     %d ", rounds); !strings.Contains(stdout, want) {
		t.Errorf("no rounds line saying %d in:\n%s", rounds, stdout)
	}
	var prev float64
	for _, name := range []string{"p50", "p90", "p99", "max"} {
		m := regexp.MustCompile(`(?m)^` + name + `\s+(\d+\.\d) µs$`).FindStringSubmatch(stdout)
		if m == nil {
			t.Errorf("no %q line with a latency in µs in:\n%s", name, stdout)
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		if v <= 0 || v < prev {
			t.Errorf("%s = %v µs: want positive and at least the previous line (%v µs)", name, v, prev)
		}
		prev = v
	}
}
