package lograte

import (
	"sync"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	ms := time.Millisecond
	type step struct {
		at         time.Duration // since base
		ok         bool
		suppressed uint64
	}
	// burst lines, all at the same time, then the rest of the steps.
	burst := func(n int, at time.Duration) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{at, true, 0}
		}
		return s
	}
	tests := []struct {
		name  string
		burst int
		every time.Duration
		steps []step
	}{
		{"burst then refused", 3, time.Second, append(burst(3, 0),
			step{0, false, 0}, step{999 * ms, false, 0},
			step{time.Second, true, 2}, // one period later: one line, reporting two left out
			step{time.Second, false, 0},
			step{2 * time.Second, true, 1},
		)},
		{"one per period in a steady flood", 1, 100 * ms, []step{
			{0, true, 0}, {50 * ms, false, 0}, {100 * ms, true, 1},
			{150 * ms, false, 0}, {199 * ms, false, 0}, {200 * ms, true, 2},
		}},
		{"quiet spell earns the burst back", 2, time.Second, []step{
			{0, true, 0}, {0, true, 0}, {0, false, 0},
			{time.Second, true, 1}, // one line earned back
			{time.Second, false, 0},
			{10 * time.Second, true, 1}, {10 * time.Second, true, 0}, // both
			{10 * time.Second, false, 0},
		}},
		{"burst below one is one", 0, time.Second, []step{
			{0, true, 0}, {0, false, 0}, {time.Second, true, 1},
		}},
		{"no period, no limit", 1, 0, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0},
		}},
		{"times before New", 1, time.Second, []step{
			{-time.Hour, true, 0}, {-time.Hour, false, 0}, {-time.Hour + time.Second, true, 1},
		}},
		{"time going back", 2, time.Second, []step{
			{time.Hour, true, 0}, {time.Hour, true, 0},
			// An hour back: refused, and counted from there with no
			// burst left, instead of refusing for an hour.
			{0, false, 0}, {time.Second, true, 1}, {time.Second, false, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.burst, tt.every)
			base := time.Unix(1_700_000_000, 0) // no monotonic reading: wall times only
			for i, st := range tt.steps {
				ok, suppressed := l.Allow(base.Add(st.at))
				if ok != st.ok || suppressed != st.suppressed {
					t.Fatalf("step %d (at %v): Allow = %v, %d; want %v, %d", i, st.at, ok, suppressed, st.ok, st.suppressed)
				}
			}
		})
	}
}

// TestAllowConcurrent checks that callers racing at one instant get the
// burst and no more, and that every refusal is reported once.
func TestAllowConcurrent(t *testing.T) {
	const burst, callers, each = 10, 8, 500
	l := New(burst, time.Second)
	now := time.Now()
	var wg sync.WaitGroup
	allowed := make(chan uint64, callers*each)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if ok, s := l.Allow(now); ok {
					allowed <- s
				}
			}
		}()
	}
	wg.Wait()
	close(allowed)
	var n int
	var reported uint64
	for s := range allowed {
		n++
		reported += s
	}
	if n != burst {
		t.Fatalf("%d lines allowed at one instant, want the burst of %d", n, burst)
	}
	ok, s := l.Allow(now.Add(time.Second))
	if !ok {
		t.Fatal("no line allowed a period later")
	}
	if reported+s != callers*each-burst {
		t.Fatalf("%d refusals reported, want %d", reported+s, callers*each-burst)
	}
}
