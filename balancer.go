package velo

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo/peer"
)

// A Balancer picks the instance a routed call goes to (a send with
// .Service, or with no target). Options.Balancer sets it; the default is
// LeastLoaded. Pick is called for every attempt of every routed call,
// concurrently, and must be fast: it runs on the caller's goroutine
// before anything is sent.
type Balancer interface {
	// Pick returns the index in c of the instance to call; c is never
	// empty. The instances that stopped answering (see Options.EjectAfter)
	// and those this call already tried are left out of c while others
	// remain.
	Pick(handler string, c Candidates) int
}

// Candidates are the instances a routed call may go to, in id order.
type Candidates struct {
	eps []*endpoint
	now int64 // Unix seconds, for the latency fade
}

// Len is the number of candidates.
func (c Candidates) Len() int { return len(c.eps) }

// At describes candidate i.
func (c Candidates) At(i int) Candidate {
	e := c.eps[i]
	return Candidate{ID: e.id, InFlight: int(e.inflight.Load()), Latency: e.latency(c.now)}
}

// Candidate is what a Balancer sees of one instance.
type Candidate struct {
	ID peer.ID
	// InFlight is how many routed calls of this instance wait on it now.
	InFlight int
	// Latency is a moving average of how long its routed calls took to
	// be answered, which fades when it has answered none for a while (so
	// that an instance once slow is tried again); zero before the first
	// answer.
	Latency time.Duration
}

// endpoint is the routing state of one instance. Its counters are
// updated without a lock by the calls routed to it.
type endpoint struct {
	id       peer.ID
	inflight atomic.Int32
	ewma     atomic.Int64 // nanoseconds; 0 before the first sample
	sampled  atomic.Int64 // Unix seconds of the last sample
	// ejected: the instance stopped answering (see eject.go); picks
	// avoid it while it is.
	ejected atomic.Bool
	// timeouts counts consecutive attempts to it that timed out.
	timeouts atomic.Int32
}

// latencyFade is how often an endpoint's latency halves while it gets no
// answer to sample: a slow instance that is no longer picked is tried
// again within a few of these.
const latencyFade = time.Second

// latency is the moving average as of now (Unix seconds).
func (e *endpoint) latency(now int64) time.Duration {
	l := e.ewma.Load()
	if l == 0 {
		return 0
	}
	if idle := now - e.sampled.Load(); idle > 1 {
		l >>= min(idle-1, 62) // halves each latencyFade (a second)
		l = max(l, 1)
	}
	return time.Duration(l)
}

// sample folds one answer's latency into the moving average (weight
// 1/4). Concurrent samples may overwrite each other: the average stays
// one of theirs, which is all a balancer needs.
func (e *endpoint) sample(d time.Duration, now int64) {
	n := int64(max(d, 1))
	if old := e.ewma.Load(); old != 0 {
		n = old + (n-old)/4
	}
	e.ewma.Store(max(n, 1))
	if e.sampled.Load() != now {
		e.sampled.Store(now)
	}
}

// LeastLoaded returns the default balancer: of two candidates drawn at
// random, the one with the lower cost, in-flight calls plus one times
// latency. An instance with no latency yet, against one with, is
// compared by in-flight calls alone. Two random choices keep every caller
// from rushing the single best instance at once, and an instance that
// slows down is sent fewer calls as its latency and its queue grow.
func LeastLoaded() Balancer { return leastLoaded{} }

type leastLoaded struct{}

func (leastLoaded) Pick(_ string, c Candidates) int {
	n := len(c.eps)
	if n == 1 {
		return 0
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := c.eps[i], c.eps[j]
	la, lb := a.latency(c.now), b.latency(c.now)
	fa, fb := float64(a.inflight.Load()+1), float64(b.inflight.Load()+1)
	if la > 0 && lb > 0 {
		fa, fb = fa*float64(la), fb*float64(lb)
	}
	if fb < fa {
		return j
	}
	return i
}

// RoundRobin returns a balancer that takes the candidates in turn,
// whatever their load.
func RoundRobin() Balancer { return &roundRobin{} }

type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Pick(_ string, c Candidates) int {
	return int((r.next.Add(1) - 1) % uint64(len(c.eps)))
}
