package main

import (
	"math"
	"slices"
	"time"
)

// sample is what one repetition of one system measured. A stream has no
// latencies: only its rate.
type sample struct {
	p50, p90, p99, max time.Duration
	rate               float64 // round trips (or messages) per second
	ops                int     // how many were measured
}

// summarize computes a sample from the latencies of one repetition, which
// took elapsed in all. It sorts lat in place.
func summarize(lat []time.Duration, elapsed time.Duration) sample {
	slices.Sort(lat)
	s := sample{
		p50: percentile(lat, 50),
		p90: percentile(lat, 90),
		p99: percentile(lat, 99),
		max: percentile(lat, 100),
	}
	if elapsed > 0 {
		s.rate = float64(len(lat)) / elapsed.Seconds()
	}
	s.ops = len(lat)
	return s
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest value that at least p% of the values do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// rank = ceil(p/100 * n), computed in integers to avoid rounding
	// 0.99*n up or down by float error.
	n := len(sorted)
	num := int(math.Round(p*100)) * n // p in hundredths of a percent
	rank := (num + 100*100 - 1) / (100 * 100)
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// summary is one system's result over every repetition: the median of
// each statistic, and the spread of p50 and of the rate so that noise
// shows.
type summary struct {
	system                 string
	reps                   int
	ops                    int // per repetition (the median)
	p50, p50min, p50max    time.Duration
	p90, p99, max          time.Duration
	rate, rateMin, rateMax float64
	ratio                  float64 // headline figure ÷ the floor's; 0 when there is no floor
	ratioPeer              float64 // headline figure ÷ the best peer's; 0 when there is none
}

// aggregate summarises the samples of one system.
func aggregate(system string, samples []sample) summary {
	pick := func(f func(sample) time.Duration) []time.Duration {
		out := make([]time.Duration, len(samples))
		for i, s := range samples {
			out[i] = f(s)
		}
		slices.Sort(out)
		return out
	}
	p50s := pick(func(s sample) time.Duration { return s.p50 })
	rates := make([]float64, len(samples))
	ops := make([]time.Duration, len(samples))
	for i, s := range samples {
		rates[i] = s.rate
		ops[i] = time.Duration(s.ops)
	}
	slices.Sort(rates)
	slices.Sort(ops)
	sum := summary{
		system: system,
		reps:   len(samples),
		ops:    int(median(ops)),
		p50:    median(p50s),
		p90:    median(pick(func(s sample) time.Duration { return s.p90 })),
		p99:    median(pick(func(s sample) time.Duration { return s.p99 })),
		max:    median(pick(func(s sample) time.Duration { return s.max })),
		rate:   median(rates),
	}
	if len(p50s) > 0 {
		sum.p50min, sum.p50max = p50s[0], p50s[len(p50s)-1]
		sum.rateMin, sum.rateMax = rates[0], rates[len(rates)-1]
	}
	return sum
}

// noisySpread is the ratio of the largest to the smallest p50 across
// repetitions beyond which a system's result is flagged as noisy.
const noisySpread = 1.5

// noisy says whether the headline figure of s varied beyond noisySpread
// across repetitions: p50 when there are latencies, else the rate.
func (s summary) noisy() bool {
	if s.p50min > 0 {
		return float64(s.p50max) > noisySpread*float64(s.p50min)
	}
	return s.rateMin > 0 && s.rateMax > noisySpread*s.rateMin
}

// median of sorted values; the mean of the middle two for an even count.
func median[T ~int64 | ~float64](sorted []T) T {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
