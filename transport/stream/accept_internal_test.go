package stream

import (
	"testing"
	"time"
)

func TestNextAcceptBackoff(t *testing.T) {
	var got []time.Duration
	var d time.Duration
	for range 10 {
		d = nextAcceptBackoff(d)
		got = append(got, d)
	}
	ms := time.Millisecond
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pauses %v, want %v", got, want)
		}
	}
}

// TestAcceptWarn drives the log decisions with made-up times: one line a
// second at most, counting what it left out, and a line for the success
// that ends a run of failures only if one of them was logged.
func TestAcceptWarn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		ms       int
		accepted bool
		// failed: whether logged and how many left out before; accepted:
		// whether logged, the run's failures and its length.
		logIt  bool
		n      int
		lasted time.Duration
	}
	steps := []step{
		{ms: 0, accepted: true}, // no failures: nothing to say
		{ms: 10, logIt: true},   // the first failure is logged
		{ms: 15},
		{ms: 25},
		{ms: 1009},                    // 999 ms after the last line
		{ms: 1010, logIt: true, n: 3}, // a second after: logged, 3 left out
		{ms: 1500, accepted: true, logIt: true, n: 5, lasted: 1490 * time.Millisecond},
		{ms: 1600}, // a new run, within the second: left out
		{ms: 1700, accepted: true, n: 1, lasted: 100 * time.Millisecond}, // ends a run nothing of which was logged
		{ms: 2100, logIt: true, n: 1},
		{ms: 2200, accepted: true, logIt: true, n: 1, lasted: 100 * time.Millisecond},
	}
	var w acceptWarn
	for _, s := range steps {
		if s.accepted {
			logIt, n, lasted := w.accepted(at(s.ms))
			if logIt != s.logIt || n != s.n || lasted != s.lasted {
				t.Errorf("accepted at %d ms = %v, %d, %v; want %v, %d, %v", s.ms, logIt, n, lasted, s.logIt, s.n, s.lasted)
			}
			continue
		}
		logIt, n := w.failed(at(s.ms))
		if logIt != s.logIt || n != s.n {
			t.Errorf("failed at %d ms = %v, %d; want %v, %d", s.ms, logIt, n, s.logIt, s.n)
		}
	}
}
