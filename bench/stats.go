package main

import (
	"math"
	"slices"
	"time"
)

// sample is what one repetition of one system measured.
type sample struct {
	p50, p90, p99, max time.Duration
	rate               float64 // round trips per second
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
// each statistic, and the spread of p50 so that noise shows.
type summary struct {
	system              string
	reps                int
	p50, p50min, p50max time.Duration
	p90, p99, max       time.Duration
	rate                float64
	ratio               float64 // p50 / floor's p50; 0 when there is no floor
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
	for i, s := range samples {
		rates[i] = s.rate
	}
	slices.Sort(rates)
	sum := summary{
		system: system,
		reps:   len(samples),
		p50:    median(p50s),
		p90:    median(pick(func(s sample) time.Duration { return s.p90 })),
		p99:    median(pick(func(s sample) time.Duration { return s.p99 })),
		max:    median(pick(func(s sample) time.Duration { return s.max })),
		rate:   median(rates),
	}
	if len(p50s) > 0 {
		sum.p50min, sum.p50max = p50s[0], p50s[len(p50s)-1]
	}
	return sum
}

// setRatios fills each summary's ratio to the floor's p50, when the floor
// was measured.
func setRatios(sums []summary) {
	var floor time.Duration
	for _, s := range sums {
		if s.system == floorName {
			floor = s.p50
		}
	}
	if floor <= 0 {
		return
	}
	for i := range sums {
		sums[i].ratio = float64(sums[i].p50) / float64(floor)
	}
}

// noisySpread is the ratio of the largest to the smallest p50 across
// repetitions beyond which a system's result is flagged as noisy.
const noisySpread = 1.5

// noisySystems names the systems whose p50 varied beyond noisySpread.
func noisySystems(sums []summary) []string {
	var out []string
	for _, s := range sums {
		if s.p50min > 0 && float64(s.p50max) > noisySpread*float64(s.p50min) {
			out = append(out, s.system)
		}
	}
	return out
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
