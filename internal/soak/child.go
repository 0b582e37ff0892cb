package soak

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Role is the testchild role of a soak child: the test binary that runs
// Run must dispatch it to ChildMain in its TestMain.
const Role = "soak"

// ChildMain runs a soak child: it prints its peer.Info, serves the load
// and the test's control calls until the test stops it, and returns the
// exit code.
func ChildMain() int {
	rt := &routes{Transport: tcp.New(tcp.Options{}), via: make(map[string]string)}
	m, err := velo.NewBuilder().
		AddTransport(rt).
		Options(options).
		EventOptions(events.Options{OwnerLostAfter: 2 * time.Second, SendTimeout: time.Second}).
		Build(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak child:", err)
		return 2
	}
	c := &child{
		m:       m,
		routes:  rt,
		handled: make(map[uint64]int),
		kinds:   make(map[string]*kindStats),
		stop:    make(chan struct{}),
	}
	c.wd.inflight = make(map[uint64]inflight)
	for _, h := range c.handlers() {
		if err := m.RegisterHandler(h.Build()); err != nil {
			fmt.Fprintln(os.Stderr, "soak child:", err)
			return 2
		}
	}
	if err := testchild.PrintInfo(m.PeerInfo()); err != nil {
		return 2
	}
	testchild.WaitStop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.halt()
	m.Shutdown(ctx)
	return 0
}

type childPeer struct {
	peerSpec
	id peer.ID
}

// child is the state of a soak child process.
type child struct {
	m      *velo.Messenger
	routes *routes
	index  int
	peers  []childPeer

	seq   atomic.Uint64
	notes atomic.Int64

	mu      sync.Mutex
	handled map[uint64]int        // guarded by mu
	acked   []uint64              // guarded by mu
	kinds   map[string]*kindStats // guarded by mu
	bad     int                   // guarded by mu
	samples []string              // guarded by mu

	wd      watchdog
	stop    chan struct{}
	workers sync.WaitGroup
	timers  sync.WaitGroup // event completions scheduled
}

// watchdog knows every call in flight and flags those that outlive their
// deadline by more than margin.
type watchdog struct {
	mu       sync.Mutex
	next     uint64
	inflight map[uint64]inflight // guarded by mu
	hung     int                 // guarded by mu
	overrun  time.Duration       // guarded by mu
	samples  []string            // guarded by mu
}

type inflight struct {
	kind     string
	deadline time.Time
	flagged  bool
}

func (w *watchdog) begin(kind string, deadline time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.inflight[w.next] = inflight{kind: kind, deadline: deadline}
	return w.next
}

func (w *watchdog) end(tok uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.inflight[tok]
	delete(w.inflight, tok)
	if over := time.Since(c.deadline); over > w.overrun {
		w.overrun = over
	}
}

func (w *watchdog) scan(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for tok, c := range w.inflight {
		if !c.flagged && now.After(c.deadline.Add(margin)) {
			c.flagged = true
			w.inflight[tok] = c
			w.hung++
			if len(w.samples) < sampleMax {
				w.samples = append(w.samples, fmt.Sprintf("%s call still running %v after its deadline", c.kind, now.Sub(c.deadline).Round(time.Millisecond)))
			}
		}
	}
}

func (w *watchdog) run(stop <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			w.scan(now)
		}
	}
}

func (c *child) handlers() []*velo.HandlerBuilder {
	return []*velo.HandlerBuilder{
		// The load's targets.
		velo.AMHandler("soak.ingest", func(_ context.Context, vc *velo.Context) error {
			if len(vc.Payload) < 8 {
				return fmt.Errorf("ingest payload of %d bytes", len(vc.Payload))
			}
			id := binary.BigEndian.Uint64(vc.Payload)
			c.mu.Lock()
			c.handled[id]++
			c.mu.Unlock()
			return nil
		}),
		velo.AMHandler("soak.note", func(context.Context, *velo.Context) error {
			c.notes.Add(1)
			return nil
		}),
		velo.UnaryHandler("soak.echo", func(_ context.Context, vc *velo.Context) ([]byte, error) {
			return vc.Payload, nil
		}),
		velo.TypedUnaryHandler("soak.add", func(_ context.Context, tc *velo.TypedContext[addIn]) (addOut, error) {
			return addOut{Sum: tc.Input.A + tc.Input.B, Tag: tc.Input.Tag}, nil
		}).Ordered(),
		velo.TypedUnaryHandler("soak.watch", func(ctx context.Context, tc *velo.TypedContext[events.Handle]) (string, error) {
			aw, err := c.m.Events().Awaiter(tc.Input)
			if err != nil {
				return "", err
			}
			err = aw.Wait(ctx)
			var pe *events.PoisonError
			switch {
			case err == nil:
				return "triggered", nil
			case errors.As(err, &pe):
				return "poisoned: " + pe.Reason, nil
			}
			return "", err
		}),

		// The test's controls.
		velo.TypedUnaryHandler("soak.config", func(ctx context.Context, tc *velo.TypedContext[childConfig]) (bool, error) {
			return true, c.configure(ctx, tc.Input)
		}),
		velo.UnaryHandler("soak.start", func(context.Context, *velo.Context) ([]byte, error) {
			c.start()
			return nil, nil
		}),
		velo.TypedUnaryHandler("soak.stop", func(context.Context, *velo.TypedContext[bool]) (stopReply, error) {
			return c.halt(), nil
		}),
		velo.TypedUnaryHandler("soak.report", func(context.Context, *velo.TypedContext[bool]) (idReport, error) {
			return c.report(), nil
		}),
		velo.TypedUnaryHandler("soak.stats", func(context.Context, *velo.TypedContext[bool]) (Stats, error) {
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return Stats{Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc}, nil
		}),
	}
}

// configure learns the other children and how to reach them, then calls
// each once so that the connections exist before the baseline is taken.
func (c *child) configure(ctx context.Context, cfg childConfig) error {
	c.index = cfg.Index
	c.routes.mu.Lock()
	for _, p := range cfg.Peers {
		c.routes.via[p.Addr] = p.Via
	}
	c.routes.mu.Unlock()
	for _, spec := range cfg.Peers {
		id, err := peer.Parse(spec.ID)
		if err != nil {
			return err
		}
		if err := c.m.RegisterPeer(peer.Info{ID: id, Addresses: map[string]string{tcp.Name: spec.Addr}}); err != nil {
			return err
		}
		c.peers = append(c.peers, childPeer{spec, id})
	}
	for _, p := range c.peers {
		if _, err := c.m.Unary("soak.echo").RawPayload([]byte("warm")).Instance(p.id).Send(ctx); err != nil {
			return fmt.Errorf("warming up the connection to child %d: %w", p.Index, err)
		}
	}
	return nil
}

func (c *child) start() {
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		c.wd.run(c.stop)
	}()
	for w := range workers {
		c.workers.Add(1)
		go c.work(uint64(w))
	}
}

// halt stops the load and reports it. Idempotent.
func (c *child) halt() stopReply {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	done := make(chan struct{})
	go func() {
		c.workers.Wait()
		c.timers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopWait):
		c.wd.scan(time.Now().Add(time.Hour)) // whatever still runs is hung
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wd.mu.Lock()
	defer c.wd.mu.Unlock()
	return stopReply{
		Kinds:      c.kinds,
		Hung:       c.wd.hung,
		Bad:        c.bad,
		Samples:    append(slices.Clone(c.wd.samples), c.samples...),
		Notes:      c.notes.Load(),
		MaxOverrun: c.wd.overrun,
	}
}

// report hands over the ids and forgets them, so that they do not count
// in the heap measured afterwards.
func (c *child) report() idReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := idReport{Acked: c.acked}
	for id, n := range c.handled {
		r.Handled = append(r.Handled, id)
		if n > 1 {
			r.Twice = append(r.Twice, id)
		}
	}
	c.acked = nil
	c.handled = make(map[uint64]int)
	return r
}

func (c *child) work(w uint64) {
	defer c.workers.Done()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), w))
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-pause.C:
		}
		p := c.peers[rng.IntN(len(c.peers))]
		kind := pick(rng)
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		dl, _ := ctx.Deadline()
		tok := c.wd.begin(kind, dl)
		err := c.call(ctx, rng, kind, p)
		c.wd.end(tok)
		cancel()
		c.record(kind, err)
		pause.Reset(pace)
	}
}

// pick draws a call kind by the weights of kinds.
func pick(rng *rand.Rand) string {
	n := rng.IntN(100)
	for _, k := range kinds {
		if n < k.weight {
			return k.name
		}
		n -= k.weight
	}
	return kinds[0].name
}

// messageID is an AMSync's id: the sender's index, the receiver's, and
// the sender's sequence number.
func messageID(from, to int, seq uint64) uint64 {
	return uint64(from)<<56 | uint64(to)<<48 | seq&(1<<48-1)
}

// messageEnds returns the sender and receiver indexes of a messageID.
func messageEnds(id uint64) (from, to int) { return int(id >> 56), int(id >> 48 & 0xff) }

func (c *child) call(ctx context.Context, rng *rand.Rand, kind string, p childPeer) error {
	switch kind {
	case "amsync":
		id := messageID(c.index, p.Index, c.seq.Add(1))
		pl := binary.BigEndian.AppendUint64(make([]byte, 0, 8+256), id)
		pl = append(pl, make([]byte, rng.IntN(256))...)
		err := c.m.AMSync("soak.ingest").RawPayload(pl).Instance(p.id).Send(ctx)
		if err == nil {
			c.mu.Lock()
			c.acked = append(c.acked, id)
			c.mu.Unlock()
		}
		return err
	case "unary":
		n := 1 + rng.IntN(1024)
		if rng.IntN(bigEvery) == 0 {
			n = 32 << 10
		}
		pl := make([]byte, n)
		for i := range pl {
			pl[i] = byte(rng.Uint32())
		}
		got, err := c.m.Unary("soak.echo").RawPayload(pl).Instance(p.id).Send(ctx)
		if err == nil && !bytes.Equal(got, pl) {
			return &badResult{fmt.Sprintf("echo of %d bytes answered %d different bytes", len(pl), len(got))}
		}
		return err
	case "typed":
		in := addIn{A: rng.Int64N(1 << 40), B: rng.Int64N(1 << 40), Tag: fmt.Sprint("t", rng.Uint32())}
		out, err := velo.TypedUnary[addOut](c.m, "soak.add").Payload(in).Instance(p.id).Send(ctx)
		if err == nil && (out.Sum != in.A+in.B || out.Tag != in.Tag) {
			return &badResult{fmt.Sprintf("add(%d, %d, %q) answered %+v", in.A, in.B, in.Tag, out)}
		}
		return err
	case "amsend":
		return c.m.AMSend("soak.note").RawPayload([]byte("note")).Instance(p.id).Send(ctx)
	case "event":
		ev, err := c.m.Events().NewEvent()
		if err != nil {
			return err
		}
		poison := rng.IntN(2) == 0
		reason := fmt.Sprint("soak poison ", rng.Uint32())
		c.timers.Add(1)
		time.AfterFunc(time.Duration(rng.IntN(50))*time.Millisecond, func() {
			defer c.timers.Done()
			if poison {
				ev.Poison(reason)
			} else {
				ev.Trigger()
			}
		})
		want := "triggered"
		if poison {
			want = "poisoned: " + reason
		}
		got, err := velo.TypedUnary[string](c.m, "soak.watch").Payload(ev.Handle()).Instance(p.id).Send(ctx)
		if err == nil && got != want {
			return &badResult{fmt.Sprintf("awaited event answered %q, want %q", got, want)}
		}
		return err
	}
	return &badResult{"unknown kind " + kind}
}

func (c *child) record(kind string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.kinds[kind]
	if k == nil {
		k = &kindStats{Failed: make(map[string]int)}
		c.kinds[kind] = k
	}
	k.Calls++
	var ve *velo.Error
	var bad *badResult
	switch {
	case err == nil:
		k.OK++
		return
	case errors.As(err, &bad):
	case errors.As(err, &ve):
		k.Failed[ve.Code.String()]++
		return
	default:
		bad = &badResult{fmt.Sprintf("%s: not a velo error: %T %v", kind, err, err)}
	}
	c.bad++
	if len(c.samples) < sampleMax {
		c.samples = append(c.samples, kind+": "+bad.msg)
	}
}
