package velo

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// Stats is a snapshot of a messenger's counters, in plain values. Taking
// one reads atomics and walks the handler table and the connections: it
// is cheap enough to do every second.
type Stats struct {
	// Handlers has an entry per registered user handler.
	Handlers map[string]HandlerStats
	// Peers has an entry per open connection whose handshake completed.
	Peers  []PeerStats
	Totals TotalStats
}

// HandlerStats are one handler's counters since it was registered.
type HandlerStats struct {
	// Requests counts the requests that reached the handler: those it
	// ran and those its actor refused or did not run.
	Requests uint64
	// Errors counts the requests answered with an error, by code (a
	// one-way message's failure too).
	Errors map[Code]uint64
	// Panics counts the handler's panics; Restarts, the supervisor's
	// restarts after them.
	Panics   uint64
	Restarts int
	// RefusedBusy counts the requests refused because the mailbox was
	// full (RejectWhenFull); Expired, those whose ctx ended while they
	// waited and that were therefore not run.
	RefusedBusy uint64
	Expired     uint64
	// InFlight is how many requests are queued or running now.
	InFlight int64
	// MailboxDepth is how many mailbox slots are taken now, of
	// MailboxCapacity.
	MailboxDepth, MailboxCapacity int
	// Duration is how long requests took, from their arrival to their
	// answer (queueing included).
	Duration Histogram
}

// Histogram counts durations in buckets: Counts[i] counts those not over
// Bounds[i]; the last count, one more than the bounds, those over the
// last bound.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// PeerStats describe one connection.
type PeerStats struct {
	ID        peer.ID
	Transport string
	Dialed    bool   // this instance opened the connection
	Identity  string // what the transport authenticated of the peer
	// FramesIn and BytesIn count what was received; FramesOut and
	// BytesOut, the requests and responses sent (pings and other control
	// frames aside).
	FramesIn, FramesOut, BytesIn, BytesOut uint64
	// CallsPending counts this instance's calls waiting for an answer on
	// the connection.
	CallsPending int
	// LastHeard is when keepalive last saw a frame from the peer.
	LastHeard time.Time
}

// TotalStats are the messenger's own counters.
type TotalStats struct {
	// NotFound counts requests for a handler this instance does not
	// have; Denied, those Options.Authorize refused.
	NotFound, Denied uint64
	// Retries counts the attempts made after a call's first (retries and
	// hedges).
	Retries uint64
	// Connections is len(Peers); Ejected, the instances routing leaves
	// out now.
	Connections, Ejected int
	// PayloadsReused counts the large frames begun in the memory of a
	// payload handed back (HandlerBuilder.ReusePayload,
	// Messenger.ReleasePayload; a frame aborted or lost with its
	// connection counts too, and its buffer is then let go);
	// PayloadBytesKept is the memory kept for reuse now.
	PayloadsReused   uint64
	PayloadBytesKept int
}

// durationBounds are the buckets of HandlerStats.Duration: 50 µs to about
// 13 s, each twice the one before.
var durationBounds = func() []time.Duration {
	var b []time.Duration
	for d := 50 * time.Microsecond; d < 15*time.Second; d *= 2 {
		b = append(b, d)
	}
	return b
}()

// handlerStats are a handler's counters, updated without a lock on the
// receive path and in finish.
//
// requests is counted where a request is read, the rest where it ends,
// often on another CPU: requests has a cache line of its own, and the
// requests in flight are requests less count, not a counter that both
// sides would write.
type handlerStats struct {
	requests atomic.Uint64
	_        [cacheLine - 8]byte
	panics   atomic.Uint64
	errors   [codeCount]atomic.Uint64
	buckets  []atomic.Uint64 // len(durationBounds)+1
	count    atomic.Uint64
	sum      atomic.Int64 // nanoseconds
}

// cacheLine is the size of a CPU cache line on the machines velo runs on
// (64 bytes on amd64 and most arm64), for keeping fields written on
// different CPUs apart.
const cacheLine = 64

// inFlight is how many requests have reached the handler and not ended.
// count is read first: a request ending meanwhile cannot make it negative.
func (st *handlerStats) inFlight() int64 {
	done := st.count.Load()
	return int64(st.requests.Load() - done)
}

// codeCount bounds the codes counted per handler.
const codeCount = int(CodeUnauthenticated) + 1

func newHandlerStats() *handlerStats {
	return &handlerStats{buckets: make([]atomic.Uint64, len(durationBounds)+1)}
}

// done counts a finished request: its duration and, if it failed, its
// code.
func (st *handlerStats) done(took time.Duration, err error) {
	i, _ := slices.BinarySearch(durationBounds, took)
	st.buckets[i].Add(1)
	st.count.Add(1)
	st.sum.Add(int64(took))
	if err != nil {
		c := codeOfErr(err)
		if int(c) >= codeCount {
			c = CodeInternal
		}
		st.errors[c].Add(1)
	}
}

// codeOfErr is the code an error is answered with.
func codeOfErr(err error) Code {
	s, _ := toStatus(err)
	return codeOf(s)
}

// Stats returns a snapshot of the messenger's counters.
func (m *Messenger) Stats() Stats {
	out := Stats{Handlers: make(map[string]HandlerStats)}
	for name, e := range *m.handlers.Load() {
		if system.IsReserved(name) {
			continue
		}
		st := e.stats
		hs := HandlerStats{
			Requests:        st.requests.Load(),
			Errors:          make(map[Code]uint64),
			Panics:          st.panics.Load(),
			Restarts:        e.actor.Restarts(),
			RefusedBusy:     e.actor.Refused(),
			Expired:         e.actor.Expired(),
			InFlight:        st.inFlight(),
			MailboxDepth:    e.actor.Depth(),
			MailboxCapacity: e.actor.Capacity(),
			Duration: Histogram{
				Bounds: slices.Clone(durationBounds),
				Counts: make([]uint64, len(st.buckets)),
				Count:  st.count.Load(),
				Sum:    time.Duration(st.sum.Load()),
			},
		}
		for c := range st.errors {
			if n := st.errors[c].Load(); n > 0 {
				hs.Errors[Code(c)] = n
			}
		}
		for i := range st.buckets {
			hs.Duration.Counts[i] = st.buckets[i].Load()
		}
		out.Handlers[name] = hs
	}
	m.mu.RLock()
	for s := range m.sessions {
		if !s.ready() || s.tname == selfName {
			continue
		}
		out.Peers = append(out.Peers, PeerStats{
			ID: s.peer.ID, Transport: s.tname, Dialed: s.dialed, Identity: s.identity,
			FramesIn: s.framesIn.Load(), FramesOut: s.framesOut.Load(),
			BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
			CallsPending: len(s.calls),
			LastHeard:    time.Unix(0, s.lastRecv.Load()),
		})
	}
	m.mu.RUnlock()
	slices.SortFunc(out.Peers, func(a, b PeerStats) int { return slices.Compare(a.ID[:], b.ID[:]) })
	out.Totals = TotalStats{
		NotFound:    m.notFoundCount.Load(),
		Denied:      m.denied.Load(),
		Retries:     m.retried.Load(),
		Connections: len(out.Peers),
		Ejected:     int(m.ejected.Load()),
	}
	out.Totals.PayloadsReused, out.Totals.PayloadBytesKept = m.payloads.stats()
	return out
}

// registerStats registers _stats when the options allow it.
func (m *Messenger) registerStats() error {
	if !m.opts.ServeStats {
		return nil
	}
	return m.register(UnaryHandler(system.Stats, func(context.Context, *Context) ([]byte, error) {
		return msgpack.Marshal(m.Stats())
	}).Build())
}

// RemoteStats asks the instance id for its Stats; it answers only if it
// was built with Options.ServeStats (else ErrHandlerNotFound), and if its
// Authorize allows it.
func (m *Messenger) RemoteStats(ctx context.Context, id peer.ID) (Stats, error) {
	var st Stats
	b, err := m.Unary(system.Stats).Instance(id).Send(ctx)
	if err != nil {
		return st, err
	}
	if err := decodePayload(b, &st); err != nil {
		return st, newError(CodeBadPayload, system.Stats, err, "decoding stats: %v", err)
	}
	return st, nil
}
