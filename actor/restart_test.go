package actor

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		p      RestartPolicy
		streak int
		want   time.Duration
	}{
		{"none", RestartPolicy{}, 5, 0},
		{"first", RestartPolicy{Backoff: 10 * ms}, 0, 10 * ms},
		{"doubles", RestartPolicy{Backoff: 10 * ms}, 3, 80 * ms},
		{"capped", RestartPolicy{Backoff: 10 * ms, MaxBackoff: 50 * ms}, 3, 50 * ms},
		{"default cap", RestartPolicy{Backoff: time.Second}, 10, defaultMaxBackoff},
		{"backoff above default cap", RestartPolicy{Backoff: time.Hour}, 3, time.Hour},
		{"no overflow", RestartPolicy{Backoff: time.Second, MaxBackoff: 1 << 62}, 200, 1 << 62},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.backoff(tt.streak); got != tt.want {
				t.Fatalf("backoff(%d) = %v, want %v", tt.streak, got, tt.want)
			}
		})
	}
}

// TestSupervisorFailure drives the restart bookkeeping with explicit times.
func TestSupervisorFailure(t *testing.T) {
	ms := time.Millisecond
	type step struct {
		at      time.Duration // since the start
		proven  bool          // the failed handler had finished a message
		restart bool
		delay   time.Duration
	}
	tests := []struct {
		name  string
		p     RestartPolicy
		steps []step
	}{
		{"zero policy stops at once", RestartPolicy{}, []step{
			{0, false, false, 0},
		}},
		{"unlimited", DefaultRestartPolicy(), []step{
			{0, false, true, 0}, {1, false, true, 0}, {2, true, true, 0},
		}},
		{"two over the whole life", RestartPolicy{MaxRestarts: 2}, []step{
			{0, false, true, 0}, {time.Hour, true, true, 0}, {2 * time.Hour, true, false, 0},
		}},
		{"window forgets", RestartPolicy{MaxRestarts: 2, Window: 100 * ms}, []step{
			{0, false, true, 0},
			{50 * ms, false, true, 0},
			{99 * ms, false, false, 0}, // two restarts within the last 100 ms
			{101 * ms, false, true, 0}, // the one at 0 has left the window
			{149 * ms, false, false, 0},
			{300 * ms, false, true, 0},
		}},
		{"backoff grows in a burst and resets", RestartPolicy{MaxRestarts: -1, Backoff: 10 * ms, MaxBackoff: 30 * ms}, []step{
			{0, false, true, 10 * ms},
			{1, false, true, 20 * ms},
			{2, false, true, 30 * ms},
			{3, false, true, 30 * ms},
			{4, true, true, 10 * ms}, // the handler had finished a message: new burst
			{5, false, true, 20 * ms},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := supervisor{policy: tt.p}
			start := time.Unix(1000, 0)
			granted := 0
			for i, st := range tt.steps {
				restart, delay := s.failure(start.Add(st.at), st.proven)
				if restart != st.restart || delay != st.delay {
					t.Fatalf("step %d: failure() = %v, %v; want %v, %v", i, restart, delay, st.restart, st.delay)
				}
				if restart {
					granted++
				}
				if s.restarts != granted {
					t.Fatalf("step %d: restarts = %d, want %d", i, s.restarts, granted)
				}
				if tt.p.MaxRestarts >= 0 && len(s.recent) > tt.p.MaxRestarts {
					t.Fatalf("step %d: %d restart times kept, more than MaxRestarts", i, len(s.recent))
				}
			}
		})
	}
}
