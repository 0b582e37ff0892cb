package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
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
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "ping_pong")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	for _, mode := range []struct {
		name string
		args []string
	}{
		{"spawn", nil},
		{"inline", []string{"-inline"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			stdout, stderr, err := runProgram(t, bin, append([]string{"-rounds", "200", "-warmup", "20"}, mode.args...)...)
			if err != nil {
				t.Fatalf("ping_pong: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			if !strings.Contains(stdout, "rounds     200 ") {
				t.Errorf("no rounds line saying 200 in:\n%s", stdout)
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
		})
	}

	t.Run("unknown transport", func(t *testing.T) {
		_, stderr, err := runProgram(t, bin, "-transport", "carrier-pigeon")
		if err == nil {
			t.Fatal("ping_pong succeeded with an unknown transport")
		}
		if !strings.Contains(stderr, `"carrier-pigeon"`) || !strings.Contains(stderr, "supported: tcp") {
			t.Errorf("stderr does not name the transport and the supported ones:\n%s", stderr)
		}
	})
}

// runProgram runs bin with args, bounded in time so that a hung run fails
// the test instead of stalling it.
func runProgram(t *testing.T, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// The server child inherits our stderr pipe; should it outlive its
	// parent, stop waiting for the pipe to close after a while.
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	return out.String(), errOut.String(), err
}
