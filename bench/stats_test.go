package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 100, 7},
		{[]time.Duration{1, 2}, 50, 1},
		{[]time.Duration{1, 2, 3}, 50, 2},
		{hundred, 50, 50},
		{hundred, 90, 90},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 0, 1},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.sorted), tc.p, got, tc.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	samples := []sample{
		{p50: 30, p90: 40, p99: 50, max: 90, rate: 100},
		{p50: 10, p90: 20, p99: 30, max: 70, rate: 300},
		{p50: 20, p90: 30, p99: 40, max: 80, rate: 200},
	}
	got := aggregate("x", samples)
	want := summary{system: "x", reps: 3, p50: 20, p50min: 10, p50max: 30, p90: 30, p99: 40, max: 80, rate: 200}
	if got != want {
		t.Errorf("aggregate = %+v, want %+v", got, want)
	}
	even := aggregate("y", samples[:2])
	if even.p50 != 20 || even.rate != 200 {
		t.Errorf("median of two = %v, %v; want the mean of both", even.p50, even.rate)
	}

	sums := []summary{{system: "velo", p50: 30}, {system: floorName, p50: 20}}
	setRatios(sums)
	if sums[0].ratio != 1.5 || sums[1].ratio != 1 {
		t.Errorf("ratios %v, %v; want 1.5, 1", sums[0].ratio, sums[1].ratio)
	}
}
