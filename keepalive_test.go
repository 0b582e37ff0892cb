package velo

import (
	"testing"
	"time"
)

// TestKeepaliveStep drives the keepalive decision through each case with
// made-up times: no connection, no clock, no sleep. The slow end-to-end
// test of the same decision is TestFaultKeepaliveDetectsSilentPeer.
func TestKeepaliveStep(t *testing.T) {
	start := time.Now()
	times := keepaliveTimes{interval: 2 * time.Second, timeout: 7 * time.Second, handshake: 5 * time.Second}
	now := start.Add(time.Minute)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	// A ready connection heard from and pinged a moment ago.
	fresh := linkState{ready: true, age: time.Minute, lastRecv: ago(100 * time.Millisecond), lastSend: ago(100 * time.Millisecond)}
	with := func(f func(*linkState)) linkState { st := fresh; f(&st); return st }

	cases := []struct {
		name     string
		st       linkState
		action   keepaliveAction
		why      closeWhy
		after    time.Duration
		lastRecv time.Time
	}{
		{name: "fresh", st: fresh, lastRecv: fresh.lastRecv},
		{name: "heard moves lastRecv to now", st: with(func(s *linkState) { s.heard = true; s.lastRecv = ago(3 * time.Second) }), lastRecv: now},
		{name: "handshake pending", st: linkState{age: 4 * time.Second, lastRecv: ago(4 * time.Second), lastSend: ago(4 * time.Second)}, lastRecv: ago(4 * time.Second)},
		{name: "handshake late", st: linkState{age: 6 * time.Second, lastRecv: ago(6 * time.Second)}, action: keepClose, why: closeNoHandshake, after: 5 * time.Second, lastRecv: ago(6 * time.Second)},
		{name: "unready ignores heard", st: linkState{age: time.Second, heard: true, lastRecv: ago(time.Second)}, lastRecv: ago(time.Second)},
		{name: "idle for the interval: ping", st: with(func(s *linkState) { s.lastRecv, s.lastSend = ago(2*time.Second), ago(2*time.Second) }), action: keepPing, lastRecv: ago(2 * time.Second)},
		{name: "idle but pinged lately", st: with(func(s *linkState) { s.lastRecv, s.lastSend = ago(5*time.Second), ago(time.Second) }), lastRecv: ago(5 * time.Second)},
		{name: "silent past the timeout", st: with(func(s *linkState) { s.lastRecv, s.lastSend = ago(8*time.Second), ago(time.Second) }), action: keepClose, why: closeSilent, after: 8 * time.Second, lastRecv: ago(8 * time.Second)},
		{name: "silent exactly the timeout: ping", st: with(func(s *linkState) { s.lastRecv, s.lastSend = ago(7*time.Second), ago(3*time.Second) }), action: keepPing, lastRecv: ago(7 * time.Second)},
		{name: "heard just in time", st: with(func(s *linkState) { s.heard = true; s.lastRecv, s.lastSend = ago(8*time.Second), ago(3*time.Second) }), lastRecv: now},
		{name: "writes stuck though heard", st: with(func(s *linkState) { s.heard = true; s.writeStall = 8 * time.Second }), action: keepClose, why: closeWritesStuck, after: 8 * time.Second, lastRecv: now},
		{name: "writes slow, within the timeout", st: with(func(s *linkState) { s.writeStall = 6 * time.Second }), lastRecv: fresh.lastRecv},
		{name: "stalled and progressing counts as heard", st: with(func(s *linkState) { s.stalled, s.progressed = true, true; s.lastRecv = ago(6 * time.Second) }), lastRecv: now},
		{name: "stalled: unasked pong, not ping", st: with(func(s *linkState) {
			s.stalled, s.progressed = true, true
			s.lastRecv, s.lastSend = ago(6*time.Second), ago(2*time.Second)
		}), action: keepPong, lastRecv: now},
		{name: "stalled without progress is silence", st: with(func(s *linkState) { s.stalled = true; s.lastRecv, s.lastSend = ago(8*time.Second), ago(2*time.Second) }), action: keepClose, why: closeSilent, after: 8 * time.Second, lastRecv: ago(8 * time.Second)},
		{name: "stalled, pong sent lately", st: with(func(s *linkState) { s.stalled = true; s.lastRecv, s.lastSend = ago(3*time.Second), ago(time.Second) }), lastRecv: ago(3 * time.Second)},
		{name: "progress without a stall is not heard", st: with(func(s *linkState) { s.progressed = true; s.lastRecv, s.lastSend = ago(8*time.Second), ago(time.Second) }), action: keepClose, why: closeSilent, after: 8 * time.Second, lastRecv: ago(8 * time.Second)},
	}
	for _, c := range cases {
		v := keepaliveStep(c.st, now, times)
		if v.action != c.action || v.why != c.why || v.after != c.after || !v.lastRecv.Equal(c.lastRecv) {
			t.Errorf("%s: got action %d why %d after %v lastRecv %v ago; want action %d why %d after %v lastRecv %v ago",
				c.name, v.action, v.why, v.after, now.Sub(v.lastRecv), c.action, c.why, c.after, now.Sub(c.lastRecv))
		}
	}
}
