package velo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Distributed events through real messengers: package events is
// tested against a fake network; these tests prove the wiring in events.go
// over TCP, several instances and a killed process. Where a test must know
// that something reached the other side (a subscription recorded by the
// owner), it polls the managers' Stats, which have no notification; where
// it must know what went on the wire, it counts frames with frameCounter.

// newEventMessenger is newMessenger with event options.
func newEventMessenger(t testing.TB, opts velo.Options, eo events.Options, tr transport.Transport) *velo.Messenger {
	t.Helper()
	return build(t, velo.NewBuilder().Options(opts).EventOptions(eo).AddTransport(tr))
}

// mesh starts n messengers over TCP that all know each other.
func mesh(t testing.TB, n int) []*velo.Messenger {
	t.Helper()
	ms := make([]*velo.Messenger, n)
	for i := range ms {
		ms[i] = newMessenger(t, velo.Options{}, tcp.New(tcp.Options{}))
	}
	for _, m := range ms {
		for _, o := range ms {
			if m != o {
				if err := m.RegisterPeer(o.PeerInfo()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return ms
}

// quietOptions never ping within a test, so that frame counts see only
// the frames the test caused.
var quietOptions = velo.Options{KeepaliveInterval: time.Minute, KeepaliveTimeout: 2 * time.Minute}

// countedPair is pair with both messengers' frames counted, and no
// keepalive traffic.
func countedPair(t testing.TB) (a, b *velo.Messenger, ca, cb *frameCounter) {
	t.Helper()
	ca, cb = countFrames(tcp.New(tcp.Options{})), countFrames(tcp.New(tcp.Options{}))
	a = newMessenger(t, quietOptions, ca)
	b = newMessenger(t, quietOptions, cb)
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterPeer(a.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	return a, b, ca, cb
}

// frameCounter wraps a transport and counts the frames the messenger
// writes on its connections, dialed or accepted, and among them the
// requests by handler name.
type frameCounter struct {
	transport.Transport

	mu       sync.Mutex
	frames   int            // every frame written
	requests map[string]int // request frames, by handler
}

var _ transport.Transport = (*frameCounter)(nil)

func countFrames(inner transport.Transport) *frameCounter {
	return &frameCounter{Transport: inner, requests: make(map[string]int)}
}

func (f *frameCounter) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	return f.Transport.Listen(ctx, f.wrap(bind))
}

func (f *frameCounter) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	c, err := f.Transport.Dial(ctx, addr, f.wrap(bind))
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, f: f}, nil
}

// wrap gives the messenger a counting Conn: it writes through the Conn its
// Binder received.
func (f *frameCounter) wrap(bind transport.Binder) transport.Binder {
	return func(c transport.Conn) transport.Handler {
		return bind(&countingConn{Conn: c, f: f})
	}
}

// record counts one frame, length prefix included. It keeps no reference
// to b.
func (f *frameCounter) record(b []byte) {
	handler := ""
	if len(b) >= wire.PrefixLen {
		typ, body, err := wire.ParseHeader(b[wire.PrefixLen:])
		if err == nil && typ == wire.TypeRequest {
			r, err := wire.ParseRequest(body, wire.Limits{MaxHeaders: math.MaxUint16, MaxHeaderBytes: math.MaxInt32})
			if err == nil {
				handler = r.Handler
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frames++
	if handler != "" {
		f.requests[handler]++
	}
}

// count returns the frames written so far and the requests to handler
// among them.
func (f *frameCounter) count(handler string) (frames, requests int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frames, f.requests[handler]
}

type countingConn struct {
	transport.Conn
	f *frameCounter
}

func (c *countingConn) WriteFrame(ctx context.Context, b []byte) error {
	c.f.record(b)
	return c.Conn.WriteFrame(ctx, b)
}

// eventually polls cond until it holds, failing the test if ctx ends first.
// It is for state that notifies nobody, such as a manager's Stats.
func eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		}
	}
}

// subscribed waits until owner records n remote subscriptions.
func subscribed(t testing.TB, ctx context.Context, owner *velo.Messenger, n int) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("%d subscriptions at the owner", n), func() bool {
		return owner.Events().Stats().Subscriptions == n
	})
}

func newEvent(t testing.TB, m *velo.Messenger) *events.Event {
	t.Helper()
	ev, err := m.Events().NewEvent()
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	return ev
}

func awaiter(t testing.TB, m *velo.Messenger, h events.Handle) *events.Awaiter {
	t.Helper()
	aw, err := m.Events().Awaiter(h)
	if err != nil {
		t.Fatalf("Awaiter(%s): %v", h, err)
	}
	return aw
}

// checkOutcome checks that err is the outcome of an event triggered (want
// "" and poisoned false) or poisoned with the reason want.
func checkOutcome(t testing.TB, what string, err error, poisoned bool, want string) {
	t.Helper()
	if !poisoned {
		if err != nil {
			t.Errorf("%s: %v, want nil (triggered)", what, err)
		}
		return
	}
	if !errors.Is(err, velo.ErrEventPoisoned) {
		t.Errorf("%s: %v, want an error matching velo.ErrEventPoisoned", what, err)
		return
	}
	if r, ok := events.PoisonReason(err); !ok || r != want {
		t.Errorf("%s: poison reason %q (%v), want %q", what, r, ok, want)
	}
}

// oddReason is a poison reason that a lossy encoding would damage.
var oddReason = "disk on fire:\x00\xff ünïcode\n" + strings.Repeat("r", 1000)

// TestEventRemoteTriggerAndPoison completes an event of a, awaited on b,
// in every way: by the owner or by b through the owner, triggered or
// poisoned, with b's subscription recorded before the completion or the
// completion done before b asks.
func TestEventRemoteTriggerAndPoison(t *testing.T) {
	a, b := pair(t)
	ctx := testCtx(t)
	completions := []struct {
		name     string
		complete func(ev *events.Event) error
		poisoned bool
	}{
		{"owner triggers", func(ev *events.Event) error { return ev.Trigger() }, false},
		{"owner poisons", func(ev *events.Event) error { return ev.Poison(oddReason) }, true},
		{"remote triggers", func(ev *events.Event) error { return b.Events().Trigger(ctx, ev.Handle()) }, false},
		{"remote poisons", func(ev *events.Event) error { return b.Events().Poison(ctx, ev.Handle(), oddReason) }, true},
	}
	for _, c := range completions {
		for _, subscribedFirst := range []bool{true, false} {
			name := c.name + "/completed first"
			if subscribedFirst {
				name = c.name + "/subscribed first"
			}
			t.Run(name, func(t *testing.T) {
				ev := newEvent(t, a)
				h := ev.Handle()
				var aw *events.Awaiter
				if subscribedFirst {
					aw = awaiter(t, b, h)
					subscribed(t, ctx, a, 1)
				}
				if err := c.complete(ev); err != nil {
					t.Fatalf("completing: %v", err)
				}
				if !subscribedFirst {
					aw = awaiter(t, b, h)
				}
				checkOutcome(t, "remote Wait", aw.Wait(ctx), c.poisoned, oddReason)
				// b learnt the outcome from the owner: a agrees, and the
				// event cannot complete again.
				checkOutcome(t, "owner's Wait", awaiter(t, a, h).Wait(ctx), c.poisoned, oddReason)
				if err := ev.Trigger(); !errors.Is(err, events.ErrAlreadyCompleted) {
					t.Errorf("second completion: %v, want ErrAlreadyCompleted", err)
				}
				if st := a.Events().Stats(); st.Pending != 0 || st.Subscriptions != 0 {
					t.Errorf("owner stats after completion: %+v", st)
				}
				if st := b.Events().Stats(); st.Proxies != 0 {
					t.Errorf("subscriber stats after completion: %+v", st)
				}
			})
		}
	}
}

// TestEventManyRemoteAwaiters has two instances await several events of a
// third, many goroutines each, beside local awaiters on the owner; half the
// events are triggered, half poisoned with their own reason.
func TestEventManyRemoteAwaiters(t *testing.T) {
	ms := mesh(t, 3)
	a, subscribers := ms[0], ms[1:]
	ctx := testCtx(t)
	const nEvents, perInstance = 8, 25
	poisoned := func(i int) bool { return i%2 == 1 }
	reason := func(i int) string { return fmt.Sprintf("event %d poisoned", i) }

	type result struct {
		who string
		i   int
		err error
	}
	results := make(chan result, nEvents*(len(ms))*perInstance)
	evs := make([]*events.Event, nEvents)
	for i := range evs {
		evs[i] = newEvent(t, a)
		for k, m := range ms {
			for range perInstance {
				aw := awaiter(t, m, evs[i].Handle())
				go func() { results <- result{fmt.Sprintf("instance %d", k), i, aw.Wait(ctx)} }()
			}
		}
	}
	subscribed(t, ctx, a, nEvents*len(subscribers))
	for i, ev := range evs {
		var err error
		if poisoned(i) {
			err = ev.Poison(reason(i))
		} else {
			err = ev.Trigger()
		}
		if err != nil {
			t.Fatalf("completing event %d: %v", i, err)
		}
	}
	for range cap(results) {
		r := <-results // every Wait returns: ctx bounds it
		checkOutcome(t, fmt.Sprintf("%s, event %d", r.who, r.i), r.err, poisoned(r.i), reason(r.i))
	}
	for k, m := range ms {
		if st := m.Events().Stats(); st.Pending != 0 || st.Subscriptions != 0 || st.Proxies != 0 {
			t.Errorf("instance %d stats after completion: %+v", k, st)
		}
	}
}

// completeRequest asks the "complete-event" handler to complete an event
// owned by another instance: the handle travels in a MessagePack payload.
type completeRequest struct {
	Event  events.Handle `msgpack:"event"`
	Poison bool          `msgpack:"poison"`
	Reason string        `msgpack:"reason"`
}

// testNonOwnerCompletes: a owns an event that b awaits; c, which holds the
// handle only because a sent it in a payload, completes it through a.
func testNonOwnerCompletes(t *testing.T, poison bool) {
	ms := mesh(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	ctx := testCtx(t)
	mustRegister(t, c, velo.TypedUnaryHandler("complete-event", func(ctx context.Context, tc *velo.TypedContext[completeRequest]) (bool, error) {
		req := tc.Input
		if req.Poison {
			return true, tc.Msg.Events().Poison(ctx, req.Event, req.Reason)
		}
		return true, tc.Msg.Events().Trigger(ctx, req.Event)
	}))

	ev := newEvent(t, a)
	aw := awaiter(t, b, ev.Handle())
	subscribed(t, ctx, a, 1)
	req := completeRequest{Event: ev.Handle(), Poison: poison, Reason: oddReason}
	if _, err := velo.TypedUnary[bool](a, "complete-event").Payload(req).Instance(c.InstanceID()).Send(ctx); err != nil {
		t.Fatalf("complete-event on c: %v", err)
	}
	checkOutcome(t, "b's Wait", aw.Wait(ctx), poison, oddReason)
	if err := ev.Trigger(); !errors.Is(err, events.ErrAlreadyCompleted) {
		t.Errorf("owner completing after c: %v, want ErrAlreadyCompleted", err)
	}
	// c did not learn the outcome by completing: awaiting asks the owner.
	checkOutcome(t, "c's Wait", awaiter(t, c, ev.Handle()).Wait(ctx), poison, oddReason)
}

func TestEventNonOwnerTriggers(t *testing.T) { testNonOwnerCompletes(t, false) }

func TestEventNonOwnerPoisons(t *testing.T) { testNonOwnerCompletes(t, true) }

// TestEventTriggerAwaitRace releases b's await and a's trigger of a new
// event together, 1000 times: whichever reaches a's manager first, the
// awaiter must wake (docs/events.md, "TOCTOU safety").
func TestEventTriggerAwaitRace(t *testing.T) {
	a, b := pair(t)
	ctx := testCtx(t)
	const iterations = 1000
	for i := range iterations {
		ev := newEvent(t, a)
		h := ev.Handle()
		start := make(chan struct{})
		waited, triggered := make(chan error, 1), make(chan error, 1)
		go func() {
			<-start
			aw, err := b.Events().Awaiter(h)
			if err != nil {
				waited <- err
				return
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			waited <- aw.Wait(wctx)
		}()
		go func() {
			<-start
			triggered <- ev.Trigger()
		}()
		close(start)
		if err := <-triggered; err != nil {
			t.Fatalf("iteration %d: Trigger: %v", i, err)
		}
		if err := <-waited; err != nil {
			t.Fatalf("iteration %d: remote Wait: %v", i, err)
		}
	}
}

// TestEventOneSubscriptionForManyAwaiters has 1000 goroutines of b await
// one event of a: b sends one _event_subscribe, a one _event_trigger.
func TestEventOneSubscriptionForManyAwaiters(t *testing.T) {
	a, b, ca, cb := countedPair(t)
	ctx := testCtx(t)
	const n = 1000
	ev := newEvent(t, a)
	var ready sync.WaitGroup
	ready.Add(n)
	results := make(chan error, n)
	for range n {
		go func() {
			aw, err := b.Events().Awaiter(ev.Handle())
			ready.Done()
			if err != nil {
				results <- err
				return
			}
			results <- aw.Wait(ctx)
		}()
	}
	ready.Wait() // every awaiter exists before the trigger
	subscribed(t, ctx, a, 1)
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
	if _, subs := cb.count(events.SubscribeHandler); subs != 1 {
		t.Errorf("b sent %d %s frames for %d awaiters, want 1", subs, events.SubscribeHandler, n)
	}
	if _, trig := ca.count(events.TriggerHandler); trig != 1 {
		t.Errorf("a sent %d %s frames, want 1", trig, events.TriggerHandler)
	}
	if st := b.Events().Stats(); st.Proxies != 0 || st.Cached != 1 {
		t.Errorf("b's stats: %+v, want no proxy and one cached outcome", st)
	}
}

// TestEventCompletedAnsweredFromCache awaits remote events once, then
// again: the second awaiters resolve when created, and b writes no frame.
func TestEventCompletedAnsweredFromCache(t *testing.T) {
	a, b, _, cb := countedPair(t)
	ctx := testCtx(t)
	triggered, poisoned := newEvent(t, a), newEvent(t, a)
	first := []*events.Awaiter{awaiter(t, b, triggered.Handle()), awaiter(t, b, poisoned.Handle())}
	if err := triggered.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := poisoned.Poison(oddReason); err != nil {
		t.Fatal(err)
	}
	checkOutcome(t, "first remote Wait, triggered", first[0].Wait(ctx), false, "")
	checkOutcome(t, "first remote Wait, poisoned", first[1].Wait(ctx), true, oddReason)

	before, _ := cb.count("")
	for _, c := range []struct {
		ev       *events.Event
		poisoned bool
	}{{triggered, false}, {poisoned, true}} {
		aw := awaiter(t, b, c.ev.Handle())
		select {
		case <-aw.Done():
		default:
			t.Fatalf("awaiter of completed %s not resolved at creation", c.ev.Handle())
		}
		checkOutcome(t, "cached Wait", aw.Wait(ctx), c.poisoned, oddReason)
		// A non-owner completing a cached event is refused locally too.
		if err := b.Events().Trigger(ctx, c.ev.Handle()); !errors.Is(err, events.ErrAlreadyCompleted) {
			t.Errorf("Trigger of a cached event: %v, want ErrAlreadyCompleted", err)
		}
	}
	if after, _ := cb.count(""); after != before {
		t.Errorf("b wrote %d frames answering from its cache, want 0", after-before)
	}
}

// TestEventOwnerKilled kills the process that owns events awaited here:
// the awaiters fail with ErrOwnerLost within the owner-lost bound.
func TestEventOwnerKilled(t *testing.T) {
	c := startChild(t)
	m := newEventMessenger(t,
		velo.Options{KeepaliveInterval: 100 * time.Millisecond, KeepaliveTimeout: 400 * time.Millisecond},
		events.Options{OwnerLostAfter: 500 * time.Millisecond},
		tcp.New(tcp.Options{}))
	if err := m.RegisterPeer(c.Info); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	call := func(handler string, payload []byte) []byte {
		t.Helper()
		out, err := m.Unary(handler).RawPayload(payload).Instance(c.Info.ID).Send(ctx)
		if err != nil {
			t.Fatalf("%s in the child: %v", handler, err)
		}
		return out
	}
	mkevent := func() events.Handle {
		t.Helper()
		var h events.Handle
		if err := h.UnmarshalBinary(call("mkevent", nil)); err != nil {
			t.Fatalf("mkevent answer: %v", err)
		}
		return h
	}
	childSubscribed := func(n int) {
		t.Helper()
		eventually(t, ctx, fmt.Sprintf("%d subscriptions in the child", n), func() bool {
			var st events.Stats
			if err := json.Unmarshal(call("eventstats", nil), &st); err != nil {
				t.Fatalf("eventstats answer: %v", err)
			}
			return st.Subscriptions == n
		})
	}

	// Across processes, completions arrive.
	h1, h2 := mkevent(), mkevent()
	aw1, aw2 := awaiter(t, m, h1), awaiter(t, m, h2)
	childSubscribed(2)
	bin1, _ := h1.MarshalBinary()
	bin2, _ := h2.MarshalBinary()
	call("trigger", bin1)
	call("poison", append(bin2, oddReason...))
	checkOutcome(t, "Wait, triggered in the child", aw1.Wait(ctx), false, "")
	checkOutcome(t, "Wait, poisoned in the child", aw2.Wait(ctx), true, oddReason)

	// The owner dies with events awaited here.
	hs := []events.Handle{mkevent(), mkevent()}
	var aws []*events.Awaiter
	for _, h := range hs {
		for range 3 {
			aws = append(aws, awaiter(t, m, h))
		}
	}
	childSubscribed(len(hs))
	start := time.Now()
	c.Kill()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i, aw := range aws {
		if err := aw.Wait(wctx); !errors.Is(err, velo.ErrOwnerLost) {
			t.Fatalf("awaiter %d: %v, want ErrOwnerLost", i, err)
		}
	}
	if elapsed := time.Since(start); elapsed >= 5*time.Second {
		t.Errorf("awaiters failed %v after the kill, want under 5s", elapsed)
	}
	if st := m.Events().Stats(); st.Proxies != 0 {
		t.Errorf("stats after the owner was lost: %+v", st)
	}
}

// TestEventDroppedPoisonsRemoteAwaiter: a creates an event, b awaits it
// and a drops it; the garbage collector's cleanup poisons it, and b hears.
func TestEventDroppedPoisonsRemoteAwaiter(t *testing.T) {
	a, b := pair(t)
	ctx := testCtx(t)
	ev := newEvent(t, a)
	aw := awaiter(t, b, ev.Handle())
	subscribed(t, ctx, a, 1)
	runtime.KeepAlive(ev) // the last use: ev is unreachable from here on
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		runtime.GC()
		select {
		case <-aw.Done():
			done = true
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("dropped event never poisoned: %v", ctx.Err())
		}
	}
	checkOutcome(t, "Wait on a dropped event", aw.Wait(ctx), true, events.DroppedReason)
}

// TestEventMemoryReturnsToBaseline runs 100 000 events through a remote
// await, 1000 at a time: a creates them, b awaits them all, a completes
// them, b's awaiters wake. Afterwards the managers' bookkeeping is back to
// zero (or to its retention bounds) and the heap is back near where it
// started: no per-event state leaks on either side. (About 5 s under the
// race detector on two cores, 1 s without.)
func TestEventMemoryReturnsToBaseline(t *testing.T) {
	a, b := pair(t)
	ctx := testCtx(t)
	const total = 100_000
	const batch = 1000

	// One remote await opens the connection before the baseline.
	warm := newEvent(t, a)
	warmAw := awaiter(t, b, warm.Handle())
	if err := warm.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := warmAw.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	baseline := heapAlloc()

	evs := make([]*events.Event, batch)
	aws := make([]*events.Awaiter, batch)
	for done := 0; done < total; done += batch {
		for i := range evs {
			evs[i] = newEvent(t, a)
			aws[i] = awaiter(t, b, evs[i].Handle())
		}
		subscribed(t, ctx, a, batch)
		for i, ev := range evs {
			var err error
			if i%8 == 0 {
				err = ev.Poison("batch poisoned")
			} else {
				err = ev.Trigger()
			}
			if err != nil {
				t.Fatalf("event %d: %v", done+i, err)
			}
		}
		for i, aw := range aws {
			if err := aw.Wait(ctx); (err != nil) != (i%8 == 0) {
				t.Fatalf("event %d: Wait: %v", done+i, err)
			}
		}
	}
	clear(evs)
	clear(aws)

	retain := events.DefaultRetainCompleted
	eventually(t, ctx, "the managers to settle", func() bool {
		sa, sb := a.Events().Stats(), b.Events().Stats()
		return sa.Pending == 0 && sa.Subscriptions == 0 && sa.Queued == 0 && sa.Peers == 0 &&
			sb.Proxies == 0 && sb.Queued == 0 && sb.Peers == 0
	})
	if st := a.Events().Stats(); st.Slots > batch+retain || st.Retained > st.Slots || st.Proxies != 0 {
		t.Errorf("owner stats: %+v, want at most %d slots", st, batch+retain)
	}
	if st := b.Events().Stats(); st.Cached > events.DefaultCacheSize || st.Pending != 0 || st.Slots != 0 || st.Subscriptions != 0 {
		t.Errorf("subscriber stats: %+v", st)
	}
	const margin = 16 << 20
	after := heapAlloc()
	t.Logf("heap: %d KiB before, %d KiB after %d events", baseline>>10, after>>10, total)
	if after > baseline+margin {
		t.Errorf("heap after %d events: %d KiB, baseline %d KiB: more than %d MiB kept",
			total, after>>10, baseline>>10, margin>>20)
	}
}

// heapAlloc returns the bytes of live heap objects after a collection.
// The second collection frees what the first one's cleanups released.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestEventShutdown shuts down an instance that owns events awaited
// remotely and locally, and awaits events of others: nobody hangs.
func TestEventShutdown(t *testing.T) {
	opts := velo.Options{}
	a := newMessenger(t, opts, tcp.New(tcp.Options{}))
	b := newEventMessenger(t, opts, events.Options{OwnerLostAfter: time.Second}, tcp.New(tcp.Options{}))
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterPeer(a.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)

	awaited := newEvent(t, a)   // pending on a, awaited by b
	local := newEvent(t, a)     // pending on a, awaited by a
	unawaited := newEvent(t, a) // pending on a, awaited by b only after a is gone
	ofB := newEvent(t, b)       // pending on b, awaited by a
	remote := awaiter(t, b, awaited.Handle())
	localAw := awaiter(t, a, local.Handle())
	ofBAw := awaiter(t, a, ofB.Handle())
	subscribed(t, ctx, a, 1)
	subscribed(t, ctx, b, 1)

	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Until the shutdown, a dropped event could be poisoned by its cleanup
	// with another reason.
	runtime.KeepAlive(awaited)
	runtime.KeepAlive(local)
	runtime.KeepAlive(unawaited)
	// The poison of a's pending events reached b before the connection
	// closed: b sees the poison, not a lost owner.
	checkOutcome(t, "remote awaiter of the shut down owner", remote.Wait(ctx), true, events.ClosedReason)
	checkOutcome(t, "local awaiter of the shut down owner", localAw.Wait(ctx), true, events.ClosedReason)
	if err := ofBAw.Wait(ctx); !errors.Is(err, events.ErrClosed) {
		t.Errorf("a awaiting b's event after a shut down: %v, want events.ErrClosed", err)
	}
	if _, err := a.Events().Awaiter(ofB.Handle()); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Awaiter on a after shut down: %v, want events.ErrClosed", err)
	}
	// b awaits an event of a, which is gone: an error within b's
	// owner-lost bound, not a hang.
	lostCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := awaiter(t, b, unawaited.Handle()).Wait(lostCtx); !errors.Is(err, velo.ErrOwnerLost) {
		t.Errorf("b awaiting an event of a after a shut down: %v, want ErrOwnerLost", err)
	}
	eventually(t, ctx, "b to forget a's subscription", func() bool {
		st := b.Events().Stats()
		return st.Subscriptions == 0 && st.Proxies == 0
	})
	if err := ofB.Trigger(); err != nil {
		t.Errorf("b's own event after a left: %v", err)
	}
}

// TestEventDrainingHandlerAwaitsRemoteEvent: a handler still running when
// its instance begins to shut down awaits an event of another instance,
// which then triggers it. Draining lets running handlers finish, so the
// trigger must reach it and Shutdown end without cutting it short.
//
// It fails today: while draining, session.handleRequest refuses every
// request, the _event_* messages included, so the trigger is dropped and
// the handler waits until Shutdown's ctx cuts it short. The fix is to
// deliver _event_* messages on the receive path before the draining
// check; remove the Skip with it.
func TestEventDrainingHandlerAwaitsRemoteEvent(t *testing.T) {
	a, b := pair(t)
	ctx := testCtx(t)
	ev := newEvent(t, b)
	mustRegister(t, a, velo.AMHandler("await-event", func(ctx context.Context, c *velo.Context) error {
		var h events.Handle
		if err := h.UnmarshalBinary(c.Payload); err != nil {
			return err
		}
		aw, err := c.Msg.Events().Awaiter(h)
		if err != nil {
			return err
		}
		return aw.Wait(ctx)
	}))
	bin, _ := ev.Handle().MarshalBinary()
	called := make(chan error, 1)
	go func() { called <- b.AMSync("await-event").RawPayload(bin).Instance(a.InstanceID()).Send(ctx) }()
	subscribed(t, ctx, b, 1) // the handler is running and awaits ev

	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(sctx) }()
	eventually(t, ctx, "a to drain", func() bool {
		_, err := b.ListHandlers(ctx, a.InstanceID())
		return errors.Is(err, velo.ErrShuttingDown)
	})
	if err := ev.Trigger(); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v, want the draining handler to finish", err)
	}
	if err := <-called; err != nil {
		t.Errorf("the draining handler: %v, want nil", err)
	}
}
