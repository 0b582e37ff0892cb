package mem

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// A fault applies to the frames that travel from one endpoint to another,
// on every connection between them, open or yet to come: the endpoints are
// named by their transports' addresses (Transport.Addr, Options.Addr).
//
// Each frame's fate is drawn once, when its writer hands over its length
// prefix: a fault set while a frame is half written applies from the next
// frame on.

// route is one direction between two endpoints.
type route struct{ from, to string }

// rule is the faults set on one route.
type rule struct {
	drop      float64       // share of frames dropped; 1: all
	delay     time.Duration // how long a delayed frame is held
	upTo      bool          // the delay is drawn from [0, delay] instead
	delayRate float64       // share of frames delayed
	rng       *rand.Rand    // this route's draws, seeded from Network.seed
}

// fate is what happens to one frame.
type fate struct {
	drop  bool
	delay time.Duration
}

// Drop drops the given share of the frames that from writes to to: rate 0
// drops none (and removes the fault), 1 drops every frame, 0.1 one frame
// in ten, drawn at random (see Seed). A dropped frame is lost whole: the
// frames around it arrive intact. It panics if rate is not in [0, 1].
func (n *Network) Drop(from, to string, rate float64) {
	checkRate("Drop", rate)
	n.setRule(route{from, to}, func(r *rule) { r.drop = rate })
}

// Delay holds the given share of the frames that from writes to to for d
// before it delivers them: rate 1 delays every frame, 0.5 one in two; d 0
// or rate 0 removes the fault. A delayed frame holds up the frames behind
// it on its connection, as a frame that a link had to send again would:
// frames are never reordered. It panics if rate is not in [0, 1] or d is
// negative.
func (n *Network) Delay(from, to string, d time.Duration, rate float64) {
	checkRate("Delay", rate)
	checkDelay("Delay", d)
	n.setRule(route{from, to}, func(r *rule) { r.delay, r.upTo, r.delayRate = d, false, rate })
}

// DelayUpTo is Delay with each delayed frame held for a time drawn at
// random from [0, d] instead of d.
func (n *Network) DelayUpTo(from, to string, d time.Duration, rate float64) {
	checkRate("DelayUpTo", rate)
	checkDelay("DelayUpTo", d)
	n.setRule(route{from, to}, func(r *rule) { r.delay, r.upTo, r.delayRate = d, true, rate })
}

// Partition cuts a and b apart, both ways: every frame between them is
// lost, those already held by a Delay included, and a dial from one to the
// other waits, as a dial into a silent network would, until its ctx ends
// or the partition heals. Connections stay open: their ends notice only
// what they would notice on a real network (their keepalives go
// unanswered).
func (n *Network) Partition(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[route{a, b}] = true
	n.cut[route{b, a}] = true
	n.changedLocked()
}

// Heal removes every fault: partitions, drops and delays. Frames written
// from then on go through untouched; those held by a Delay still arrive
// at their time.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	clear(n.rules)
	n.changedLocked()
}

// Seed makes the network's random draws repeatable: each (from, to) pair
// draws from a generator of its own, seeded with seed and the pair's
// names, so that the frames of one connection meet the same fates in
// every run of a test that sends them in the same order. Seed resets the
// generators of the faults already set. Without Seed, the seed is random.
func (n *Network) Seed(seed uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seed = seed
	for rt, r := range n.rules {
		r.rng = n.rngLocked(rt)
	}
}

// setRule changes the rule of rt with f, and forgets it once it holds no
// fault.
func (n *Network) setRule(rt route, f func(*rule)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.rules[rt]
	if r == nil {
		r = &rule{rng: n.rngLocked(rt)}
	}
	f(r)
	if r.drop == 0 && (r.delay == 0 || r.delayRate == 0) {
		delete(n.rules, rt)
	} else {
		n.rules[rt] = r
	}
	n.changedLocked()
}

// rngLocked returns a generator for rt, seeded with the network's seed and
// a hash of rt's names (FNV-1a: the same in every run, unlike maphash).
func (n *Network) rngLocked(rt route) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(rt.from))
	h.Write([]byte{0})
	h.Write([]byte(rt.to))
	return rand.New(rand.NewPCG(n.seed, h.Sum64()))
}

// changedLocked records a change of faults or listeners: it wakes the
// dials waiting on a partition, and notes whether any fault is left.
func (n *Network) changedLocked() {
	n.faulty.Store(len(n.rules) > 0 || len(n.cut) > 0)
	close(n.changed)
	n.changed = make(chan struct{})
}

// fate draws what happens to the next frame that from writes to to.
func (n *Network) fate(from, to string) fate {
	if !n.faulty.Load() {
		return fate{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rt := route{from, to}
	if n.cut[rt] {
		return fate{drop: true}
	}
	r := n.rules[rt]
	if r == nil {
		return fate{}
	}
	if r.drop >= 1 || (r.drop > 0 && r.rng.Float64() < r.drop) {
		return fate{drop: true}
	}
	if r.delay > 0 && (r.delayRate >= 1 || (r.delayRate > 0 && r.rng.Float64() < r.delayRate)) {
		d := r.delay
		if r.upTo {
			d = time.Duration(r.rng.Int64N(int64(d) + 1))
		}
		return fate{delay: d}
	}
	return fate{}
}

// partitioned reports whether from and to are cut apart.
func (n *Network) partitioned(from, to string) bool {
	if !n.faulty.Load() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[route{from, to}]
}

func checkRate(fn string, rate float64) {
	if !(rate >= 0 && rate <= 1) { // NaN fails both
		panic(fmt.Sprintf("mem: %s: rate %v is not in [0, 1]", fn, rate))
	}
}

func checkDelay(fn string, d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("mem: %s: negative delay %v", fn, d))
	}
}
