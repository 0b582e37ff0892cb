package velo_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/faultproxy"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
)

// The soak test: several instances, each in a process of its own (the
// test binary re-executed in soak child mode), call each other with every
// pattern (AMSend, AMSync, Unary, TypedUnary) and with events, through
// fault proxies in the parent process, while the parent injects faults on
// a schedule: added latency, a bandwidth limit, black holes shorter than
// the keepalive bound, and resets. It checks that
//
//   - every call ends, with a result or a *velo.Error, within its ctx
//     deadline plus a margin: a watchdog in each child flags any call that
//     outlives it (a hang), and none may;
//   - every acknowledged AMSync (Send returned nil) was handled exactly
//     once, and no message was handled twice: receivers record the ids
//     they handled and senders the ids acknowledged, and the parent
//     compares;
//   - results are right (echo answers its bytes, add its sum, an awaited
//     event its outcome);
//   - each child's goroutines and heap return to near their baseline once
//     the load stops.
//
// It runs for VELO_SOAK (a duration, e.g. VELO_SOAK=5m; make soak), by
// default for 60 s: the smoke run that make test (and so CI) includes.
// Under -short it runs 10 s. The summary line is
// logged (go test -v shows it).
//
// The children are controlled over velo itself: the parent's messenger
// calls their soak.* control handlers on direct connections, which the
// faults never touch. Child i reaches child j through proxy (i, j): its
// transport dials the proxy whenever it is asked for j's address.

// soakRole is the testchild role of a soak child (soakChildMain).
const soakRole = "soak"

const (
	soakChildren    = 3
	soakWorkers     = 4                      // calling goroutines per child
	soakPace        = 4 * time.Millisecond   // pause of a worker between calls
	soakCallTimeout = 2 * time.Second        // every call's ctx deadline
	soakMargin      = 2 * time.Second        // a call must end by its deadline plus this
	soakBigEvery    = 50                     // one echo in this many carries 32 KiB
	soakControl     = 30 * time.Second       // deadline of the parent's control calls
	soakSettle      = 20 * time.Second       // how long the children get to return to baseline
	soakGoroutines  = 2*(soakChildren-1) + 8 // goroutines over baseline still "near" it
	soakHeapSlack   = 4 << 20                // heap bytes over baseline still "near" it
)

// soakOptions make faults visible quickly: a silent peer is lost within
// about a second, and a lost one is dialed again within half a second.
var soakOptions = velo.Options{
	KeepaliveInterval:   250 * time.Millisecond,
	KeepaliveTimeout:    time.Second,
	HandshakeTimeout:    time.Second,
	DialTimeout:         2 * time.Second,
	ReconnectBackoff:    20 * time.Millisecond,
	MaxReconnectBackoff: 500 * time.Millisecond,
}

// The call kinds of the load, with their weights.
var soakKinds = []struct {
	name   string
	weight int
}{
	{"amsync", 35}, // AMSync to soak.ingest: the exactly-once check
	{"unary", 25},  // Unary to soak.echo
	{"typed", 20},  // TypedUnary to soak.add
	{"amsend", 10}, // AMSend to soak.note
	{"event", 10},  // an event of ours awaited remotely by soak.watch
}

func soakPick(rng *rand.Rand) string {
	n := rng.IntN(100)
	for _, k := range soakKinds {
		if n < k.weight {
			return k.name
		}
		n -= k.weight
	}
	return soakKinds[0].name
}

// Control messages, MessagePack on the wire.
type soakPeerSpec struct {
	Index int    `msgpack:"index"`
	ID    string `msgpack:"id"`
	Addr  string `msgpack:"addr"` // where it listens
	Via   string `msgpack:"via"`  // the proxy this child reaches it through
}

type soakConfig struct {
	Index int            `msgpack:"index"`
	Peers []soakPeerSpec `msgpack:"peers"`
}

type soakStats struct {
	Goroutines int    `msgpack:"goroutines"`
	HeapAlloc  uint64 `msgpack:"heap"`
}

type soakKindStats struct {
	Calls  int            `msgpack:"calls"`
	OK     int            `msgpack:"ok"`
	Failed map[string]int `msgpack:"failed"` // by velo error code
}

type soakStopReply struct {
	Kinds      map[string]*soakKindStats `msgpack:"kinds"`
	Hung       int                       `msgpack:"hung"`
	Bad        int                       `msgpack:"bad"`
	Samples    []string                  `msgpack:"samples"` // of hangs and bad results
	Notes      int64                     `msgpack:"notes"`   // AMSends received
	MaxOverrun time.Duration             `msgpack:"overrun"` // the longest a call outlived its deadline
}

type soakReport struct {
	Acked   []uint64 `msgpack:"acked"`   // AMSync ids this child sent that returned nil
	Handled []uint64 `msgpack:"handled"` // ids its soak.ingest ran for
	Twice   []uint64 `msgpack:"twice"`   // ids it ran for more than once
}

type soakAddIn struct {
	A, B int64
	Tag  string
}

type soakAddOut struct {
	Sum int64
	Tag string
}

// soakRoutes is the children's transport: TCP, except that a dial to a
// peer's own address goes to the proxy in front of it.
type soakRoutes struct {
	transport.Transport
	mu  sync.Mutex
	via map[string]string // guarded by mu: listening address → proxy address
}

func (r *soakRoutes) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	r.mu.Lock()
	if v, ok := r.via[addr]; ok {
		addr = v
	}
	r.mu.Unlock()
	return r.Transport.Dial(ctx, addr, bind)
}

// soakBad marks a wrong result, as opposed to a velo error.
type soakBad struct{ msg string }

func (e *soakBad) Error() string { return e.msg }

// ---- the child process ----

type soakPeer struct {
	soakPeerSpec
	id peer.ID
}

type soakChild struct {
	m      *velo.Messenger
	routes *soakRoutes
	index  int
	peers  []soakPeer

	seq   atomic.Uint64
	notes atomic.Int64

	mu      sync.Mutex
	handled map[uint64]int            // guarded by mu
	acked   []uint64                  // guarded by mu
	kinds   map[string]*soakKindStats // guarded by mu
	bad     int                       // guarded by mu
	samples []string                  // guarded by mu

	wd      soakWatchdog
	stop    chan struct{}
	workers sync.WaitGroup
	timers  sync.WaitGroup // event completions scheduled
}

// soakWatchdog knows every call in flight and flags those that outlive
// their deadline by more than soakMargin.
type soakWatchdog struct {
	mu       sync.Mutex
	next     uint64
	inflight map[uint64]soakInflight // guarded by mu
	hung     int                     // guarded by mu
	overrun  time.Duration           // guarded by mu
	samples  []string                // guarded by mu
}

type soakInflight struct {
	kind     string
	deadline time.Time
	flagged  bool
}

func (w *soakWatchdog) begin(kind string, deadline time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.inflight[w.next] = soakInflight{kind: kind, deadline: deadline}
	return w.next
}

func (w *soakWatchdog) end(tok uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.inflight[tok]
	delete(w.inflight, tok)
	if over := time.Since(c.deadline); over > w.overrun {
		w.overrun = over
	}
}

func (w *soakWatchdog) scan(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for tok, c := range w.inflight {
		if !c.flagged && now.After(c.deadline.Add(soakMargin)) {
			c.flagged = true
			w.inflight[tok] = c
			w.hung++
			if len(w.samples) < 5 {
				w.samples = append(w.samples, fmt.Sprintf("%s call still running %v after its deadline", c.kind, now.Sub(c.deadline).Round(time.Millisecond)))
			}
		}
	}
}

func (w *soakWatchdog) run(stop <-chan struct{}) {
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

// soakChildMain runs a soak child: it prints its peer.Info, serves until
// the test stops it, and returns the exit code.
func soakChildMain() int {
	routes := &soakRoutes{Transport: tcp.New(tcp.Options{}), via: make(map[string]string)}
	m, err := velo.NewBuilder().
		AddTransport(routes).
		Options(soakOptions).
		EventOptions(events.Options{OwnerLostAfter: 2 * time.Second, SendTimeout: time.Second}).
		Build(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak child:", err)
		return 2
	}
	c := &soakChild{
		m:       m,
		routes:  routes,
		handled: make(map[uint64]int),
		kinds:   make(map[string]*soakKindStats),
		stop:    make(chan struct{}),
	}
	c.wd.inflight = make(map[uint64]soakInflight)
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

func (c *soakChild) handlers() []*velo.HandlerBuilder {
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
		velo.TypedUnaryHandler("soak.add", func(_ context.Context, tc *velo.TypedContext[soakAddIn]) (soakAddOut, error) {
			return soakAddOut{Sum: tc.Input.A + tc.Input.B, Tag: tc.Input.Tag}, nil
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

		// The parent's controls.
		velo.TypedUnaryHandler("soak.config", func(ctx context.Context, tc *velo.TypedContext[soakConfig]) (bool, error) {
			return true, c.configure(ctx, tc.Input)
		}),
		velo.UnaryHandler("soak.start", func(context.Context, *velo.Context) ([]byte, error) {
			c.start()
			return nil, nil
		}),
		velo.TypedUnaryHandler("soak.stop", func(context.Context, *velo.TypedContext[bool]) (soakStopReply, error) {
			return c.halt(), nil
		}),
		velo.TypedUnaryHandler("soak.report", func(context.Context, *velo.TypedContext[bool]) (soakReport, error) {
			return c.report(), nil
		}),
		velo.TypedUnaryHandler("soak.stats", func(context.Context, *velo.TypedContext[bool]) (soakStats, error) {
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return soakStats{Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc}, nil
		}),
	}
}

// configure learns the other children and how to reach them, then calls
// each once so that the connections exist before the baseline is taken.
func (c *soakChild) configure(ctx context.Context, cfg soakConfig) error {
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
		c.peers = append(c.peers, soakPeer{spec, id})
	}
	for _, p := range c.peers {
		if _, err := c.m.Unary("soak.echo").RawPayload([]byte("warm")).Instance(p.id).Send(ctx); err != nil {
			return fmt.Errorf("warming up the connection to child %d: %w", p.Index, err)
		}
	}
	return nil
}

func (c *soakChild) start() {
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		c.wd.run(c.stop)
	}()
	for w := range soakWorkers {
		c.workers.Add(1)
		go c.work(uint64(w))
	}
}

// halt stops the load and reports it. Idempotent.
func (c *soakChild) halt() soakStopReply {
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
	case <-time.After(soakCallTimeout + soakMargin + 5*time.Second):
		c.wd.scan(time.Now().Add(time.Hour)) // whatever still runs is hung
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wd.mu.Lock()
	defer c.wd.mu.Unlock()
	r := soakStopReply{
		Kinds:      c.kinds,
		Hung:       c.wd.hung,
		Bad:        c.bad,
		Samples:    append(slices.Clone(c.wd.samples), c.samples...),
		Notes:      c.notes.Load(),
		MaxOverrun: c.wd.overrun,
	}
	return r
}

// report hands over the ids and forgets them, so that they do not count
// in the heap measured afterwards.
func (c *soakChild) report() soakReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := soakReport{Acked: c.acked}
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

func (c *soakChild) work(w uint64) {
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
		kind := soakPick(rng)
		ctx, cancel := context.WithTimeout(context.Background(), soakCallTimeout)
		dl, _ := ctx.Deadline()
		tok := c.wd.begin(kind, dl)
		err := c.call(ctx, rng, kind, p)
		c.wd.end(tok)
		cancel()
		c.record(kind, err)
		pause.Reset(soakPace)
	}
}

func (c *soakChild) call(ctx context.Context, rng *rand.Rand, kind string, p soakPeer) error {
	switch kind {
	case "amsync":
		id := uint64(c.index)<<56 | uint64(p.Index)<<48 | c.seq.Add(1)
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
		if rng.IntN(soakBigEvery) == 0 {
			n = 32 << 10
		}
		pl := make([]byte, n)
		for i := range pl {
			pl[i] = byte(rng.Uint32())
		}
		got, err := c.m.Unary("soak.echo").RawPayload(pl).Instance(p.id).Send(ctx)
		if err == nil && !bytes.Equal(got, pl) {
			return &soakBad{fmt.Sprintf("echo of %d bytes answered %d different bytes", len(pl), len(got))}
		}
		return err
	case "typed":
		in := soakAddIn{A: rng.Int64N(1 << 40), B: rng.Int64N(1 << 40), Tag: fmt.Sprint("t", rng.Uint32())}
		out, err := velo.TypedUnary[soakAddOut](c.m, "soak.add").Payload(in).Instance(p.id).Send(ctx)
		if err == nil && (out.Sum != in.A+in.B || out.Tag != in.Tag) {
			return &soakBad{fmt.Sprintf("add(%d, %d, %q) answered %+v", in.A, in.B, in.Tag, out)}
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
			return &soakBad{fmt.Sprintf("awaited event answered %q, want %q", got, want)}
		}
		return err
	}
	return &soakBad{"unknown kind " + kind}
}

func (c *soakChild) record(kind string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.kinds[kind]
	if k == nil {
		k = &soakKindStats{Failed: make(map[string]int)}
		c.kinds[kind] = k
	}
	k.Calls++
	var ve *velo.Error
	var bad *soakBad
	switch {
	case err == nil:
		k.OK++
		return
	case errors.As(err, &bad):
	case errors.As(err, &ve):
		k.Failed[ve.Code.String()]++
		return
	default:
		bad = &soakBad{fmt.Sprintf("%s: not a velo error: %T %v", kind, err, err)}
	}
	c.bad++
	if len(c.samples) < 5 {
		c.samples = append(c.samples, kind+": "+bad.msg)
	}
}

// ---- the parent: the test ----

// soakProc is a soak child process seen from the parent.
type soakProc struct {
	index int
	info  peer.Info
	addr  string
}

func startSoakChild(t *testing.T, index int) *soakProc {
	t.Helper()
	// A data race found in a child makes it exit with status 66: the
	// child's Stop at the end of the test reports it.
	c := testchild.Start(t, soakRole, testchild.Options{StopTimeout: 15 * time.Second})
	return &soakProc{index: index, info: c.Info, addr: c.Info.Addresses[tcp.Name]}
}

// soakDuration is how long the load runs: VELO_SOAK, or 60 s (10 s under
// -short).
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("VELO_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("VELO_SOAK=%q: want a positive duration such as 60s or 5m", v)
		}
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return 60 * time.Second
}

// soakFault is one kind of fault the schedule injects.
type soakFault struct {
	name  string
	apply func(p *faultproxy.Proxy, rng *rand.Rand) // sets the fault, waits, restores
}

var soakFaults = []soakFault{
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

func TestSoak(t *testing.T) {
	dur := soakDuration(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("soak: %d children for %v, seed %d", soakChildren, dur, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	procs := make([]*soakProc, soakChildren)
	for i := range procs {
		procs[i] = startSoakChild(t, i)
	}
	// proxies[i][j]: child i's way to child j.
	proxies := make([][]*faultproxy.Proxy, soakChildren)
	var all []*faultproxy.Proxy
	for i := range proxies {
		proxies[i] = make([]*faultproxy.Proxy, soakChildren)
		for j, pj := range procs {
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
	ctl := newMessenger(t, velo.Options{})
	for _, p := range procs {
		if err := ctl.RegisterPeer(p.info); err != nil {
			t.Fatal(err)
		}
	}
	callCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), soakControl)
	}
	stats := func(p *soakProc) soakStats {
		t.Helper()
		cctx, cancel := callCtx()
		defer cancel()
		s, err := velo.TypedUnary[soakStats](ctl, "soak.stats").Payload(true).Instance(p.info.ID).Send(cctx)
		if err != nil {
			t.Fatalf("stats of child %d: %v", p.index, err)
		}
		return s
	}

	for i, p := range procs {
		cfg := soakConfig{Index: i}
		for j, q := range procs {
			if j != i {
				cfg.Peers = append(cfg.Peers, soakPeerSpec{Index: j, ID: q.info.ID.String(), Addr: q.addr, Via: proxies[i][j].Addr()})
			}
		}
		cctx, cancel := callCtx()
		_, err := velo.TypedUnary[bool](ctl, "soak.config").Payload(cfg).Instance(p.info.ID).Send(cctx)
		cancel()
		if err != nil {
			t.Fatalf("configuring child %d: %v", i, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // idle handler workers retire after 1 s
	base := make([]soakStats, soakChildren)
	for i, p := range procs {
		base[i] = stats(p)
	}

	for _, p := range procs {
		cctx, cancel := callCtx()
		_, err := ctl.Unary("soak.start").Instance(p.info.ID).Send(cctx)
		cancel()
		if err != nil {
			t.Fatalf("starting child %d: %v", p.index, err)
		}
	}

	// The fault schedule: round after round, every kind once in a random
	// order, each on a random proxy, with a pause in between.
	faults := make(map[string]int)
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		order := rng.Perm(len(soakFaults))
		for _, k := range order {
			if !time.Now().Before(end) {
				break
			}
			f := soakFaults[k]
			p := all[rng.IntN(len(all))]
			f.apply(p, rng)
			p.Set(faultproxy.PassThrough())
			faults[f.name]++
			time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		}
	}
	for _, p := range all {
		p.Set(faultproxy.PassThrough())
	}

	// Stop the load everywhere before reading any report.
	var results []soakStopReply
	for _, p := range procs {
		cctx, cancel := callCtx()
		r, err := velo.TypedUnary[soakStopReply](ctl, "soak.stop").Payload(true).Instance(p.info.ID).Send(cctx)
		cancel()
		if err != nil {
			t.Fatalf("stopping child %d: %v", p.index, err)
		}
		results = append(results, r)
	}
	reports := make([]soakReport, soakChildren)
	for i, p := range procs {
		cctx, cancel := callCtx()
		r, err := velo.TypedUnary[soakReport](ctl, "soak.report").Payload(true).Instance(p.info.ID).Send(cctx)
		cancel()
		if err != nil {
			t.Fatalf("report of child %d: %v", i, err)
		}
		reports[i] = r
	}

	// Exactly once: every acknowledged id was handled once by its target;
	// nothing was handled twice.
	handled := make([]map[uint64]bool, soakChildren)
	twice := 0
	for i, r := range reports {
		handled[i] = make(map[uint64]bool, len(r.Handled))
		for _, id := range r.Handled {
			handled[i][id] = true
		}
		twice += len(r.Twice)
		for _, id := range r.Twice {
			t.Errorf("child %d handled message %#x more than once", i, id)
		}
	}
	acked, ackedLost := 0, 0
	for i, r := range reports {
		for _, id := range r.Acked {
			acked++
			if from, to := int(id>>56), int(id>>48&0xff); from != i || to >= soakChildren || !handled[to][id] {
				ackedLost++
				if ackedLost <= 5 {
					t.Errorf("message %#x from child %d to child %d was acknowledged but never handled", id, from, to)
				}
			}
		}
	}

	// Back to baseline: poll until every child is near it, or time is up.
	after := make([]soakStats, soakChildren)
	near := func(i int) bool {
		return after[i].Goroutines <= base[i].Goroutines+soakGoroutines &&
			after[i].HeapAlloc <= base[i].HeapAlloc+soakHeapSlack
	}
	settle := time.Now().Add(soakSettle)
	for {
		ok := true
		for i, p := range procs {
			after[i] = stats(p)
			ok = ok && near(i)
		}
		if ok || time.Now().After(settle) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The summary.
	calls, okCalls, hung, bad, notes := 0, 0, 0, 0, int64(0)
	var overrun time.Duration
	failed := make(map[string]int)
	perKind := make(map[string][2]int) // calls, failed
	for i, r := range results {
		hung += r.Hung
		bad += r.Bad
		notes += r.Notes
		overrun = max(overrun, r.MaxOverrun)
		for _, s := range r.Samples {
			t.Errorf("child %d: %s", i, s)
		}
		for name, k := range r.Kinds {
			calls += k.Calls
			okCalls += k.OK
			pk := perKind[name]
			pk[0] += k.Calls
			for code, n := range k.Failed {
				failed[code] += n
				pk[1] += n
			}
			perKind[name] = pk
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "SOAK SUMMARY: %v, %d children, seed %d; faults injected: %s; calls: %d (%s), ok %d, failed %d by code: %s; calls lost (hung past deadline+%v): %d, longest overrun %v; bad results: %d; acknowledged AMSync %d, acknowledged but not handled %d, handled twice %d; AMSend notes received %d;",
		dur, soakChildren, seed, soakCounts(faults), calls, soakKindsLine(perKind), okCalls, calls-okCalls-bad, soakCounts(failed),
		soakMargin, hung, overrun.Round(time.Millisecond), bad, acked, ackedLost, twice, notes)
	for i := range procs {
		fmt.Fprintf(&sb, " child %d heap %s→%s goroutines %d→%d;", i, soakMiB(base[i].HeapAlloc), soakMiB(after[i].HeapAlloc), base[i].Goroutines, after[i].Goroutines)
	}
	t.Log(sb.String())

	if hung != 0 {
		t.Errorf("%d calls outlived their deadline by more than %v", hung, soakMargin)
	}
	if bad != 0 {
		t.Errorf("%d calls ended with a wrong result or an error that is not a velo error", bad)
	}
	if ackedLost != 0 || twice != 0 {
		t.Errorf("exactly once broken: %d acknowledged but not handled, %d handled twice", ackedLost, twice)
	}
	if acked == 0 || okCalls < calls/4 {
		t.Errorf("too little load got through: %d of %d calls ok, %d AMSync acknowledged", okCalls, calls, acked)
	}
	for _, f := range soakFaults {
		if faults[f.name] == 0 && dur >= 10*time.Second {
			t.Errorf("no %s fault was injected", f.name)
		}
	}
	for i := range procs {
		if !near(i) {
			t.Errorf("child %d did not return near its baseline within %v: goroutines %d→%d (allowed +%d), heap %s→%s (allowed +%s)",
				i, soakSettle, base[i].Goroutines, after[i].Goroutines, soakGoroutines, soakMiB(base[i].HeapAlloc), soakMiB(after[i].HeapAlloc), soakMiB(soakHeapSlack))
		}
	}
}

func soakCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func soakKindsLine(m map[string][2]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d/%d failed", k, m[k][1], m[k][0]))
	}
	return strings.Join(parts, ", ")
}

func soakMiB(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
