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
		{p50: 30, p90: 40, p99: 50, max: 90, rate: 100, ops: 10},
		{p50: 10, p90: 20, p99: 30, max: 70, rate: 300, ops: 10},
		{p50: 20, p90: 30, p99: 40, max: 80, rate: 200, ops: 10},
	}
	got := aggregate("x", samples)
	want := summary{system: "x", reps: 3, ops: 10, p50: 20, p50min: 10, p50max: 30, p90: 30, p99: 40, max: 80,
		rate: 200, rateMin: 100, rateMax: 300}
	if got != want {
		t.Errorf("aggregate = %+v, want %+v", got, want)
	}
	even := aggregate("y", samples[:2])
	if even.p50 != 20 || even.rate != 200 {
		t.Errorf("median of two = %v, %v; want the mean of both", even.p50, even.rate)
	}

}

func TestSetRatios(t *testing.T) {
	velo := System{Name: "velo-unary/tcp", Family: "velo-unary", Transport: "tcp"}
	floor := System{Name: floorName, Family: floorName}
	fast := System{Name: "fast-peer", Family: "fast-peer", Peer: true}
	slow := System{Name: "slow-peer", Family: "slow-peer", Peer: true}
	lat := cell{mode: modeLatency, inFlight: 1, payload: 32}
	rows := []result{
		{cell: lat, sys: velo, sum: summary{p50: 30, rate: 100}},
		{cell: lat, sys: floor, sum: summary{p50: 20, rate: 150}},
		{cell: lat, sys: fast, sum: summary{p50: 60, rate: 50}},
		{cell: lat, sys: slow, sum: summary{p50: 90, rate: 30}},
	}
	setRatios(rows)
	if r := rows[0]; r.sum.ratio != 1.5 || r.sum.ratioPeer != 0.5 || r.bestPeer != "fast-peer" {
		t.Errorf("latency: velo ratios %v, %v to %q; want 1.5, 0.5 to fast-peer", r.sum.ratio, r.sum.ratioPeer, r.bestPeer)
	}
	if rows[1].sum.ratio != 1 || rows[2].sum.ratioPeer != 0 {
		t.Errorf("floor ratio %v, peer's ratio to best peer %v; want 1 and none", rows[1].sum.ratio, rows[2].sum.ratioPeer)
	}

	// Elsewhere the rate counts, and higher is better.
	for i := range rows {
		rows[i].cell.mode = modeConcurrent
	}
	setRatios(rows)
	if r := rows[0]; r.sum.ratio != 100.0/150 || r.sum.ratioPeer != 2 || r.bestPeer != "fast-peer" {
		t.Errorf("concurrent: velo ratios %v, %v to %q; want 0.67, 2 to fast-peer", r.sum.ratio, r.sum.ratioPeer, r.bestPeer)
	}
}
