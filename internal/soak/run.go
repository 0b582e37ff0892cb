package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/faultproxy"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Env names the variable that sets how long the soak's load runs (a
// time.ParseDuration string: VELO_SOAK=5m; make soak sets it).
const Env = "VELO_SOAK"

// Default durations of the load: the smoke run that make test (and so CI)
// includes, and the one under -short.
const (
	DefaultDuration = 60 * time.Second
	ShortDuration   = 10 * time.Second
)

// DurationFromEnv is how long the load runs: Env if set, else
// DefaultDuration, or ShortDuration when short (testing.Short()).
func DurationFromEnv(short bool) (time.Duration, error) {
	if v := os.Getenv(Env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s=%q: want a positive duration such as 60s or 5m", Env, v)
		}
		return d, nil
	}
	if short {
		return ShortDuration, nil
	}
	return DefaultDuration, nil
}

// Config configures a run. The zero value means defaults.
type Config struct {
	// Duration is how long the load runs, faults injected meanwhile.
	// Zero: DefaultDuration.
	Duration time.Duration
	// Children is the number of child processes, 2 to 255. Zero: 3.
	Children int
	// Seed drives the fault schedule. Zero: one from the clock (the
	// Report gives it, so a run can be repeated).
	Seed uint64
}

func (c Config) withDefaults() (Config, error) {
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Children == 0 {
		c.Children = 3
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	switch {
	case c.Duration < 0:
		return c, fmt.Errorf("soak: Duration %v is negative", c.Duration)
	case c.Children < 2 || c.Children > 255:
		// An AMSync id carries both ends' indexes in a byte each.
		return c, fmt.Errorf("soak: Children %d, want 2 to 255", c.Children)
	}
	return c, nil
}

// fault is one kind of fault the schedule injects.
type fault struct {
	name  string
	apply func(p *faultproxy.Proxy, rng *rand.Rand) // sets the fault, waits, restores
}

var faults = []fault{
	{"latency", func(p *faultproxy.Proxy, rng *rand.Rand) {
		d := time.Duration(5+rng.IntN(60)) * time.Millisecond
		p.Set(faultproxy.Latency(d, time.Duration(rng.IntN(60))*time.Millisecond))
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	}},
	{"bandwidth", func(p *faultproxy.Proxy, rng *rand.Rand) {
		p.Set(faultproxy.Bandwidth(32<<10 + rng.IntN(96<<10)))
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
	}},
	{"black-hole", func(p *faultproxy.Proxy, rng *rand.Rand) {
		// Shorter than the keepalive bound: the connection may survive.
		p.Set(faultproxy.BlackHole())
		time.Sleep(time.Duration(200+rng.IntN(500)) * time.Millisecond)
	}},
	{"reset", func(p *faultproxy.Proxy, rng *rand.Rand) {
		p.Set(faultproxy.Reset())
		time.Sleep(time.Duration(10+rng.IntN(50)) * time.Millisecond)
	}},
}

// proc is a soak child process seen from the test.
type proc struct {
	index int
	info  peer.Info
	addr  string
}

// runner is one run, seen from the test process.
type runner struct {
	t     testing.TB
	cfg   Config
	procs []*proc
	ctl   *velo.Messenger
}

// Run runs a soak as cfg says: it starts the children (testchild, Role),
// the proxies between them and a control messenger, all stopped when the
// test ends; it runs the load under the fault schedule, stops it, and
// returns what the children report. A failure of the harness itself (a
// child that does not start, a control call that fails) fails the test at
// once; what the soak checks is in the Report (Problems).
func Run(t testing.TB, cfg Config) *Report {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, cfg: cfg}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	n := cfg.Children

	r.procs = make([]*proc, n)
	for i := range r.procs {
		// A data race found in a child makes it exit with status 66: its
		// Stop at the end of the test reports it.
		c := testchild.Start(t, Role, testchild.Options{StopTimeout: 15 * time.Second})
		r.procs[i] = &proc{index: i, info: c.Info, addr: c.Info.Addresses[tcp.Name]}
	}
	// proxies[i][j]: child i's way to child j.
	proxies := make([][]*faultproxy.Proxy, n)
	var all []*faultproxy.Proxy
	for i := range proxies {
		proxies[i] = make([]*faultproxy.Proxy, n)
		for j, pj := range r.procs {
			if i == j {
				continue
			}
			p, err := faultproxy.New(pj.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			proxies[i][j] = p
			all = append(all, p)
		}
	}
	r.ctl = r.controller()

	for i, p := range r.procs {
		cfg := childConfig{Index: i}
		for j, q := range r.procs {
			if j != i {
				cfg.Peers = append(cfg.Peers, peerSpec{Index: j, ID: q.info.ID.String(), Addr: q.addr, Via: proxies[i][j].Addr()})
			}
		}
		ctx, cancel := controlCtx()
		_, err := velo.TypedUnary[bool](r.ctl, "soak.config").Payload(cfg).Instance(p.info.ID).Send(ctx)
		cancel()
		if err != nil {
			t.Fatalf("configuring child %d: %v", i, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // idle handler workers retire after 1 s
	rep := &Report{Duration: cfg.Duration, Children: n, Seed: cfg.Seed, Faults: make(map[string]int)}
	rep.Base = make([]Stats, n)
	for i, p := range r.procs {
		rep.Base[i] = r.stats(p)
	}

	for _, p := range r.procs {
		ctx, cancel := controlCtx()
		_, err := r.ctl.Unary("soak.start").Instance(p.info.ID).Send(ctx)
		cancel()
		if err != nil {
			t.Fatalf("starting child %d: %v", p.index, err)
		}
	}

	// The fault schedule: round after round, every kind once in a random
	// order, each on a random proxy, with a pause in between.
	end := time.Now().Add(cfg.Duration)
	for time.Now().Before(end) {
		for _, k := range rng.Perm(len(faults)) {
			if !time.Now().Before(end) {
				break
			}
			f := faults[k]
			p := all[rng.IntN(len(all))]
			f.apply(p, rng)
			p.Set(faultproxy.PassThrough())
			rep.Faults[f.name]++
			time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		}
	}
	for _, p := range all {
		p.Set(faultproxy.PassThrough())
	}

	// Stop the load everywhere before reading any report.
	stops := make([]stopReply, n)
	for i, p := range r.procs {
		ctx, cancel := controlCtx()
		s, err := velo.TypedUnary[stopReply](r.ctl, "soak.stop").Payload(true).Instance(p.info.ID).Send(ctx)
		cancel()
		if err != nil {
			t.Fatalf("stopping child %d: %v", i, err)
		}
		stops[i] = s
	}
	ids := make([]idReport, n)
	for i, p := range r.procs {
		ctx, cancel := controlCtx()
		s, err := velo.TypedUnary[idReport](r.ctl, "soak.report").Payload(true).Instance(p.info.ID).Send(ctx)
		cancel()
		if err != nil {
			t.Fatalf("report of child %d: %v", i, err)
		}
		ids[i] = s
	}
	rep.addLoad(stops)
	rep.addIDs(ids)

	// Back to baseline: poll until every child is near it, or time is up.
	rep.After = make([]Stats, n)
	deadline := time.Now().Add(settle)
	for {
		for i, p := range r.procs {
			rep.After[i] = r.stats(p)
		}
		if len(rep.farFromBase()) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return rep
}

// controller starts the test's messenger, which calls the children's
// control handlers, and shuts it down when the test ends.
func (r *runner) controller() *velo.Messenger {
	r.t.Helper()
	m, err := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{})).Build(context.Background())
	if err != nil {
		r.t.Fatalf("the soak's control messenger: %v", err)
	}
	r.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			r.t.Errorf("the soak's control messenger: Shutdown: %v", err)
		}
	})
	for _, p := range r.procs {
		if err := m.RegisterPeer(p.info); err != nil {
			r.t.Fatal(err)
		}
	}
	return m
}

func controlCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), control)
}

func (r *runner) stats(p *proc) Stats {
	r.t.Helper()
	ctx, cancel := controlCtx()
	defer cancel()
	s, err := velo.TypedUnary[Stats](r.ctl, "soak.stats").Payload(true).Instance(p.info.ID).Send(ctx)
	if err != nil {
		r.t.Fatalf("stats of child %d: %v", p.index, err)
	}
	return s
}
