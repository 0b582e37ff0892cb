package soak

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMessageID(t *testing.T) {
	id := messageID(3, 200, 12345)
	if from, to := messageEnds(id); from != 3 || to != 200 {
		t.Errorf("messageEnds(messageID(3, 200, _)) = %d, %d", from, to)
	}
	if messageID(1, 2, 7) == messageID(2, 1, 7) {
		t.Error("the ids of 1→2 and 2→1 collide")
	}
}

func TestPickFollowsWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	got := make(map[string]int)
	const n = 100000
	for range n {
		got[pick(rng)]++
	}
	for _, k := range kinds {
		want := n * k.weight / 100
		if d := got[k.name] - want; d < -want/10 || d > want/10 {
			t.Errorf("%s picked %d times in %d, want about %d", k.name, got[k.name], n, want)
		}
	}
}

// goodReport is a run in which every property holds.
func goodReport() *Report {
	r := &Report{Duration: time.Minute, Children: 2, Faults: make(map[string]int)}
	for _, f := range faults {
		r.Faults[f.name] = 2
	}
	r.addLoad([]stopReply{
		{Kinds: map[string]*kindStats{"unary": {Calls: 10, OK: 9, Failed: map[string]int{"timeout": 1}}}, Notes: 3},
		{Kinds: map[string]*kindStats{"amsync": {Calls: 4, OK: 4}}},
	})
	r.addIDs([]idReport{
		{Acked: []uint64{messageID(0, 1, 1), messageID(0, 1, 2)}, Handled: []uint64{messageID(1, 0, 1)}},
		{Acked: []uint64{messageID(1, 0, 1)}, Handled: []uint64{messageID(0, 1, 1), messageID(0, 1, 2)}},
	})
	r.Base = []Stats{{Goroutines: 20, HeapAlloc: 1 << 20}, {Goroutines: 20, HeapAlloc: 1 << 20}}
	r.After = []Stats{{Goroutines: 25, HeapAlloc: 2 << 20}, {Goroutines: 20, HeapAlloc: 1 << 20}}
	return r
}

func TestReportGood(t *testing.T) {
	r := goodReport()
	if ps := r.Problems(); len(ps) != 0 {
		t.Errorf("Problems of a good run: %q", ps)
	}
	if r.Calls != 14 || r.OK != 13 || r.Failed["timeout"] != 1 || r.Acked != 3 || r.Notes != 3 {
		t.Errorf("totals: %+v", r)
	}
	s := r.Summary()
	for _, want := range []string{"SOAK SUMMARY: 1m0s, 2 children", "amsync 0/4 failed, unary 1/10 failed", "failed 1 by code: timeout 1", "acknowledged AMSync 3, acknowledged but not handled 0"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary without %q: %s", want, s)
		}
	}
}

func TestReportProblems(t *testing.T) {
	for _, tt := range []struct {
		name  string
		spoil func(r *Report)
		want  string
	}{
		{"hung", func(r *Report) { r.Hung = 2 }, "2 calls outlived their deadline"},
		{"bad", func(r *Report) { r.Bad = 1 }, "1 calls ended with a wrong result"},
		{"lost", func(r *Report) {
			r.addIDs([]idReport{{Acked: []uint64{messageID(0, 1, 9)}}, {}})
		}, "message 0x1000000000009 from child 0 to child 1 was acknowledged but never handled"},
		{"twice", func(r *Report) {
			r.addIDs([]idReport{{}, {Twice: []uint64{messageID(0, 1, 1)}}})
		}, "child 1 handled message 0x1000000000001 more than once"},
		{"little load", func(r *Report) { r.OK = 1 }, "too little load got through"},
		{"no fault", func(r *Report) { delete(r.Faults, "reset") }, "no reset fault was injected"},
		{"goroutines", func(r *Report) { r.After[1].Goroutines = 40 }, "child 1 did not return near its baseline"},
		{"heap", func(r *Report) { r.After[0].HeapAlloc = 64 << 20 }, "child 0 did not return near its baseline"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := goodReport()
			tt.spoil(r)
			ps := r.Problems()
			found := false
			for _, p := range ps {
				found = found || strings.Contains(p, tt.want)
			}
			if !found {
				t.Errorf("Problems = %q, want one with %q", ps, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.Duration != DefaultDuration || c.Children != 3 || c.Seed == 0 {
		t.Errorf("zero Config: %+v, %v", c, err)
	}
	for _, bad := range []Config{{Duration: -time.Second}, {Children: 1}, {Children: 256}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestDurationFromEnv(t *testing.T) {
	t.Setenv(Env, "")
	if d, err := DurationFromEnv(false); d != DefaultDuration || err != nil {
		t.Errorf("unset: %v, %v", d, err)
	}
	if d, err := DurationFromEnv(true); d != ShortDuration || err != nil {
		t.Errorf("unset, short: %v, %v", d, err)
	}
	t.Setenv(Env, "20s")
	if d, err := DurationFromEnv(true); d != 20*time.Second || err != nil {
		t.Errorf("%s=20s: %v, %v", Env, d, err)
	}
	for _, v := range []string{"soon", "-1s", "0s"} {
		t.Setenv(Env, v)
		if _, err := DurationFromEnv(false); err == nil {
			t.Errorf("%s=%s accepted", Env, v)
		}
	}
}
