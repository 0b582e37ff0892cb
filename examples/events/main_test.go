package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the program in process with a few rounds and checks the
// report: both lines, with latencies that make sense.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	// 250 events span three batches, the last one partial.
	if err := run(ctx, config{rounds: 250, warmup: 10}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	report := out.String()
	if !regexp.MustCompile(`(?m)^two instances .*: 250 rounds each \(after 10 warm-up\)$`).MatchString(report) {
		t.Errorf("no header line saying 250 rounds in:\n%s", report)
	}
	for _, name := range []string{"remote await", "unary call"} {
		m := regexp.MustCompile(`(?m)^` + name + `\s+p50\s+(\d+\.\d) µs\s+p99\s+(\d+\.\d) µs`).FindStringSubmatch(report)
		if m == nil {
			t.Errorf("no %q line with p50 and p99 in µs in:\n%s", name, report)
			continue
		}
		p50, _ := strconv.ParseFloat(m[1], 64)
		p99, _ := strconv.ParseFloat(m[2], 64)
		if p50 <= 0 || p99 < p50 {
			t.Errorf("%s: p50 %v µs, p99 %v µs: want 0 < p50 <= p99", name, p50, p99)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	for _, c := range []config{{rounds: 0}, {rounds: 1, warmup: -1}} {
		if err := run(t.Context(), c, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%+v) succeeded", c)
		}
	}
}

func TestPercentile(t *testing.T) {
	us := time.Microsecond
	sorted := []time.Duration{1 * us, 2 * us, 3 * us, 4 * us, 5 * us, 6 * us, 7 * us, 8 * us, 9 * us, 10 * us}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0, 1 * us}, {50, 5 * us}, {99, 10 * us}, {100, 10 * us}} {
		if got := percentile(sorted, tt.p); got != tt.want {
			t.Errorf("percentile(1..10 µs, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil, 50) = %v, want 0", got)
	}
}
