package velo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
)

// e2ePairs are the two-instance setups the end-to-end tests run on: a
// calls b, over TCP on loopback and over the in-memory transport.
var e2ePairs = []struct {
	name string
	mk   func(testing.TB) (a, b *velo.Messenger)
}{
	{"tcp", pair},
	{"mem", memPair},
}

// recvOrFail waits for a value on ch, failing the test if ctx ends first.
// It runs on the test goroutine only.
func recvOrFail[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// releaser closes a channel once, from the test or from its cleanup, so
// that a handler blocked on it never outlives a failed test (goleak).
type releaser struct {
	ch   chan struct{}
	once sync.Once
}

func newReleaser(t *testing.T) *releaser {
	r := &releaser{ch: make(chan struct{})}
	t.Cleanup(r.release) // runs before the messengers' Shutdown (LIFO)
	return r
}

func (r *releaser) release() { r.once.Do(func() { close(r.ch) }) }

// seen is what a handler observed of one message.
type seen struct {
	sender  peer.ID
	handler string
	payload []byte
	headers map[string]string
	msg     *velo.Messenger
}

func observe(c *velo.Context) seen {
	return seen{sender: c.Sender, handler: c.Handler, payload: bytes.Clone(c.Payload), headers: c.Headers, msg: c.Msg}
}

func TestAMSendDeliversPayloadAndContext(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			got := make(chan seen, 1)
			mustRegister(t, b, velo.AMHandler("notify", func(_ context.Context, c *velo.Context) error {
				got <- observe(c)
				return nil
			}))
			if err := a.AMSend("notify").RawPayload([]byte("hello b")).Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSend: %v", err)
			}
			s := recvOrFail(t, ctx, got, "the handler to run")
			if string(s.payload) != "hello b" {
				t.Errorf("payload = %q, want %q", s.payload, "hello b")
			}
			if s.sender != a.InstanceID() {
				t.Errorf("Sender = %s, want the caller %s", s.sender, a.InstanceID())
			}
			if s.handler != "notify" {
				t.Errorf("Handler = %q, want %q", s.handler, "notify")
			}
			if s.msg != b {
				t.Errorf("Msg is not the receiving messenger")
			}
			if s.headers != nil {
				t.Errorf("Headers = %v, want nil when the sender set none", s.headers)
			}
		})
	}
}

// TestKeptPayloadsStayIntact: a handler keeps every Context it is given;
// after thousands of one-way messages and calls, of every size up to a
// few KiB, sent back to back (so that the receiver reads many at a time
// from its buffer), each kept payload, handler name and header is still
// what was sent.
func TestKeptPayloadsStayIntact(t *testing.T) {
	const n = 4000
	payload := func(i int) []byte {
		return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, i%1500)
	}
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			var mu sync.Mutex
			var kept []*velo.Context
			keep := func(c *velo.Context) {
				mu.Lock()
				kept = append(kept, c)
				mu.Unlock()
			}
			mustRegister(t, b, velo.AMHandler("keep", func(_ context.Context, c *velo.Context) error {
				keep(c)
				return nil
			}))
			mustRegister(t, b, velo.UnaryHandler("keep.unary", func(_ context.Context, c *velo.Context) ([]byte, error) {
				keep(c)
				return nil, nil
			}))
			for i := range n {
				var err error
				if i%100 == 99 {
					_, err = a.Unary("keep.unary").RawPayload(payload(i)).Header("i", strconv.Itoa(i)).Instance(b.InstanceID()).Send(ctx)
				} else {
					err = a.AMSend("keep").RawPayload(payload(i)).Header("i", strconv.Itoa(i)).Instance(b.InstanceID()).Send(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := a.AMSync("keep").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatal(err) // after the others: their handlers ran
			}
			mu.Lock()
			defer mu.Unlock()
			if len(kept) != n+1 {
				t.Fatalf("%d messages kept, want %d", len(kept), n+1)
			}
			for _, c := range kept[:n] {
				i, err := strconv.Atoi(c.Headers["i"])
				if err != nil {
					t.Fatalf("header i = %q", c.Headers["i"])
				}
				want := "keep"
				if i%100 == 99 {
					want = "keep.unary"
				}
				if c.Handler != want || !bytes.Equal(c.Payload, payload(i)) {
					t.Fatalf("message %d kept as handler %q, payload of %d bytes % .8x…; want %q, %d bytes % .8x…",
						i, c.Handler, len(c.Payload), c.Payload, want, len(payload(i)), payload(i))
				}
			}
		})
	}
}

func TestAMSyncReturnsAfterHandlerFinished(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			entered := make(chan struct{})
			release := newReleaser(t)
			var finished atomic.Bool
			mustRegister(t, b, velo.AMHandler("process", func(ctx context.Context, c *velo.Context) error {
				close(entered)
				select {
				case <-release.ch:
				case <-ctx.Done():
					return ctx.Err()
				}
				finished.Store(true)
				return nil
			}))
			// The handler finishes only once this goroutine saw it start,
			// so a Send that returned on the write alone would see false.
			go func() {
				<-entered
				release.release()
			}()
			if err := a.AMSync("process").RawPayload([]byte("x")).Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSync: %v", err)
			}
			if !finished.Load() {
				t.Fatal("AMSync returned before the handler finished")
			}
		})
	}
}

func TestUnaryRawEchoIsByteExact(t *testing.T) {
	big := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	sizes := []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"1B", []byte{0xc1}},
		{"64KiB", big},
	}
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
				return c.Payload, nil
			}))
			for _, sz := range sizes {
				got, err := a.Unary("echo").RawPayload(sz.p).Instance(b.InstanceID()).Send(ctx)
				if err != nil {
					t.Fatalf("%s: Unary: %v", sz.name, err)
				}
				if len(got) != len(sz.p) || !bytes.Equal(got, sz.p) {
					t.Errorf("%s: echo returned %d bytes, want %d identical bytes", sz.name, len(got), len(sz.p))
				}
			}
		})
	}
}

type tuAddress struct {
	Street string
	City   string
	Zip    int
}

type tuCustomer struct {
	Name    string
	Address tuAddress
	Emails  []string
}

type tuLine struct {
	SKU   string
	Qty   int
	Price float64
	Tags  []string
}

type tuOrder struct {
	ID       int64
	Customer tuCustomer
	Lines    []tuLine
	Attrs    map[string]string
	Scores   map[string][]int
	Urgent   bool
}

type tuReceipt struct {
	Order    tuOrder
	Total    float64
	Quantity int
	ByTag    map[string]int
	SKUs     []string
}

func receiptFor(o tuOrder) tuReceipt {
	r := tuReceipt{Order: o, ByTag: map[string]int{}}
	for _, l := range o.Lines {
		r.Total += float64(l.Qty) * l.Price
		r.Quantity += l.Qty
		r.SKUs = append(r.SKUs, l.SKU)
		for _, tag := range l.Tags {
			r.ByTag[tag] += l.Qty
		}
	}
	return r
}

func sampleOrder() tuOrder {
	return tuOrder{
		ID: 1 << 40,
		Customer: tuCustomer{
			Name:    "Ada",
			Address: tuAddress{Street: "12 Analytical Way", City: "London", Zip: 10101},
			Emails:  []string{"ada@example.org", "countess@example.org"},
		},
		Lines: []tuLine{
			{SKU: "engine", Qty: 2, Price: 1.5, Tags: []string{"brass", "gears"}},
			{SKU: "cards", Qty: 40, Price: 0.25, Tags: []string{"paper"}},
			{SKU: "crank", Qty: 1, Price: 9.75, Tags: []string{"brass"}},
		},
		Attrs:  map[string]string{"channel": "post", "note": "fragile"},
		Scores: map[string][]int{"speed": {1, 2, 3}, "cost": {-4}},
		Urgent: true,
	}
}

func TestTypedUnaryStructRoundTrip(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			mustRegister(t, b, velo.TypedUnaryHandler("receipt", func(_ context.Context, c *velo.TypedContext[tuOrder]) (tuReceipt, error) {
				return receiptFor(c.Input), nil
			}))
			order := sampleOrder()
			got, err := velo.TypedUnary[tuReceipt](a, "receipt").Payload(order).Instance(b.InstanceID()).Send(ctx)
			if err != nil {
				t.Fatalf("TypedUnary: %v", err)
			}
			want := receiptFor(sampleOrder())
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("receipt =\n%+v\nwant\n%+v", got, want)
			}
			if want.Total != 22.75 || want.Quantity != 43 || want.ByTag["brass"] != 3 {
				t.Fatalf("receiptFor is wrong: %+v", want) // guards the expectation itself
			}
		})
	}
}

func TestPayloadIsMsgpackOnAMSendAndAMSync(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			type decoded struct {
				order tuOrder
				err   error
			}
			got := make(chan decoded, 2)
			mustRegister(t, b, velo.AMHandler("order", func(_ context.Context, c *velo.Context) error {
				var d decoded
				d.err = msgpack.Unmarshal(c.Payload, &d.order)
				got <- d
				return nil
			}))
			want := sampleOrder()
			if err := a.AMSend("order").Payload(want).Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSend: %v", err)
			}
			d := recvOrFail(t, ctx, got, "the AMSend payload")
			if d.err != nil || !reflect.DeepEqual(d.order, want) {
				t.Fatalf("AMSend payload decoded to %+v, %v; want %+v", d.order, d.err, want)
			}
			if err := a.AMSync("order").Payload(want).Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSync: %v", err)
			}
			d = recvOrFail(t, ctx, got, "the AMSync payload")
			if d.err != nil || !reflect.DeepEqual(d.order, want) {
				t.Fatalf("AMSync payload decoded to %+v, %v; want %+v", d.order, d.err, want)
			}
		})
	}
}

func TestHeadersReachHandler(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			got := make(chan seen, 4)
			ok, err := msgpack.Marshal("ok")
			if err != nil {
				t.Fatal(err)
			}
			mustRegister(t, b, velo.UnaryHandler("hdr", func(_ context.Context, c *velo.Context) ([]byte, error) {
				got <- observe(c)
				return ok, nil
			}))
			want := map[string]string{"trace-id": "abc123", "tenant": "acme", "empty": ""}
			if _, err := a.Unary("hdr").Header("trace-id", "abc123").Header("tenant", "acme").Header("empty", "").
				Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("Unary: %v", err)
			}
			if s := recvOrFail(t, ctx, got, "unary headers"); !reflect.DeepEqual(s.headers, want) {
				t.Errorf("unary: Headers = %v, want %v", s.headers, want)
			}
			if err := a.AMSync("hdr").Header("k", "v").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSync: %v", err)
			}
			if s := recvOrFail(t, ctx, got, "AMSync headers"); !reflect.DeepEqual(s.headers, map[string]string{"k": "v"}) {
				t.Errorf("AMSync: Headers = %v, want map[k:v]", s.headers)
			}
			if err := a.AMSend("hdr").Header("k2", "v2").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("AMSend: %v", err)
			}
			if s := recvOrFail(t, ctx, got, "AMSend headers"); !reflect.DeepEqual(s.headers, map[string]string{"k2": "v2"}) {
				t.Errorf("AMSend: Headers = %v, want map[k2:v2]", s.headers)
			}
			if r, err := velo.TypedUnary[string](a, "hdr").Header("k3", "v3").Instance(b.InstanceID()).Send(ctx); err != nil || r != "ok" {
				t.Errorf("TypedUnary = %q, %v; want ok", r, err)
			}
			if s := recvOrFail(t, ctx, got, "TypedUnary headers"); !reflect.DeepEqual(s.headers, map[string]string{"k3": "v3"}) {
				t.Errorf("TypedUnary: Headers = %v, want map[k3:v3]", s.headers)
			}
		})
	}
}

// TestBuilderIsAValue checks that send builders copy on every call: a
// builder kept before Header sees neither that header nor a sibling's.
func TestBuilderIsAValue(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	got := make(chan map[string]string, 3)
	mustRegister(t, b, velo.AMHandler("hdr", func(_ context.Context, c *velo.Context) error {
		got <- c.Headers
		return nil
	}))
	base := a.AMSync("hdr").Instance(b.InstanceID()).Header("x", "1")
	withY := base.Header("y", "2")
	withY3 := base.Header("y", "3")

	for _, step := range []struct {
		name string
		send velo.AMSyncBuilder
		want map[string]string
	}{
		{"base", base, map[string]string{"x": "1"}},
		{"withY", withY, map[string]string{"x": "1", "y": "2"}},
		{"withY3", withY3, map[string]string{"x": "1", "y": "3"}},
	} {
		if err := step.send.Send(ctx); err != nil {
			t.Fatalf("%s: AMSync: %v", step.name, err)
		}
		if h := recvOrFail(t, ctx, got, step.name+" headers"); !reflect.DeepEqual(h, step.want) {
			t.Errorf("%s: Headers = %v, want %v", step.name, h, step.want)
		}
	}
}

func TestCrossPatternCalls(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			ran := make(chan string, 8)
			mustRegister(t, b, velo.AMHandler("am", func(_ context.Context, c *velo.Context) error {
				ran <- "am:" + string(c.Payload)
				if string(c.Payload) == "fail" {
					return errors.New("am handler refused the job")
				}
				return nil
			}))
			mustRegister(t, b, velo.UnaryHandler("unary", func(_ context.Context, c *velo.Context) ([]byte, error) {
				ran <- "unary:" + string(c.Payload)
				return []byte("result nobody reads"), nil
			}))
			id := b.InstanceID()

			// AM handler called with AMSync: acked, and its error comes back.
			if err := a.AMSync("am").RawPayload([]byte("ok")).Instance(id).Send(ctx); err != nil {
				t.Fatalf("AMSync to AM handler: %v", err)
			}
			if got := recvOrFail(t, ctx, ran, "am handler"); got != "am:ok" {
				t.Errorf("ran %q, want am:ok", got)
			}
			err := a.AMSync("am").RawPayload([]byte("fail")).Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerError, "am", true, "am handler refused the job")
			recvOrFail(t, ctx, ran, "am handler (failing)")

			// AM handler called with Unary: an empty result.
			res, err := a.Unary("am").RawPayload([]byte("unary")).Instance(id).Send(ctx)
			if err != nil || len(res) != 0 {
				t.Errorf("Unary to AM handler = %q, %v; want empty, nil", res, err)
			}
			if got := recvOrFail(t, ctx, ran, "am handler via unary"); got != "am:unary" {
				t.Errorf("ran %q, want am:unary", got)
			}

			// Unary handler called with AMSend: it runs, the result is dropped.
			if err := a.AMSend("unary").RawPayload([]byte("send")).Instance(id).Send(ctx); err != nil {
				t.Fatalf("AMSend to unary handler: %v", err)
			}
			if got := recvOrFail(t, ctx, ran, "unary handler via AMSend"); got != "unary:send" {
				t.Errorf("ran %q, want unary:send", got)
			}

			// Unary handler called with AMSync: acked once it ran.
			if err := a.AMSync("unary").RawPayload([]byte("sync")).Instance(id).Send(ctx); err != nil {
				t.Fatalf("AMSync to unary handler: %v", err)
			}
			select {
			case got := <-ran:
				if got != "unary:sync" {
					t.Errorf("ran %q, want unary:sync", got)
				}
			default:
				t.Errorf("AMSync to the unary handler returned before it ran")
			}

			// The connection is still in order after the discarded result.
			res, err = a.Unary("unary").RawPayload([]byte("u")).Instance(id).Send(ctx)
			if err != nil || string(res) != "result nobody reads" {
				t.Errorf("Unary after the cross calls = %q, %v", res, err)
			}
			recvOrFail(t, ctx, ran, "unary handler")
		})
	}
}

func TestNestedCallBackToCaller(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			mustRegister(t, a, velo.UnaryHandler("inner", func(_ context.Context, c *velo.Context) ([]byte, error) {
				return []byte("inner(" + string(c.Payload) + ")"), nil
			}))
			mustRegister(t, b, velo.UnaryHandler("outer", func(ctx context.Context, c *velo.Context) ([]byte, error) {
				r, err := c.Msg.Unary("inner").RawPayload(c.Payload).Instance(c.Sender).Send(ctx)
				if err != nil {
					return nil, fmt.Errorf("calling back: %w", err)
				}
				return []byte("outer(" + string(r) + ")"), nil
			}).Spawn())
			got, err := a.Unary("outer").RawPayload([]byte("x")).Instance(b.InstanceID()).Send(ctx)
			if err != nil {
				t.Fatalf("Unary outer: %v", err)
			}
			if string(got) != "outer(inner(x))" {
				t.Fatalf("got %q, want %q", got, "outer(inner(x))")
			}
		})
	}
}

// dialCounter counts the connections a transport opens.
type dialCounter struct {
	transport.Transport
	dials atomic.Int32
}

func (d *dialCounter) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	d.dials.Add(1)
	return d.Transport.Dial(ctx, addr, bind)
}

// TestCallsBothWaysOverOneConnection has b call a back over the connection
// a opened, without b ever being told a's address.
func TestCallsBothWaysOverOneConnection(t *testing.T) {
	ctx := testCtx(t)
	ta := &dialCounter{Transport: tcp.New(tcp.Options{})}
	tb := &dialCounter{Transport: tcp.New(tcp.Options{})}
	a := newMessenger(t, velo.Options{}, ta)
	b := newMessenger(t, velo.Options{}, tb)
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	echo := func(prefix string) *velo.HandlerBuilder {
		return velo.UnaryHandler("who", func(_ context.Context, c *velo.Context) ([]byte, error) {
			return []byte(prefix + string(c.Payload)), nil
		})
	}
	mustRegister(t, a, echo("a:"))
	mustRegister(t, b, echo("b:"))

	got, err := a.Unary("who").RawPayload([]byte("1")).Instance(b.InstanceID()).Send(ctx)
	if err != nil || string(got) != "b:1" {
		t.Fatalf("a→b = %q, %v; want b:1", got, err)
	}
	for i := range 3 {
		p := fmt.Sprint(i)
		got, err = b.Unary("who").RawPayload([]byte(p)).Instance(a.InstanceID()).Send(ctx)
		if err != nil || string(got) != "a:"+p {
			t.Fatalf("b→a #%d = %q, %v; want a:%s", i, got, err, p)
		}
		got, err = a.Unary("who").RawPayload([]byte(p)).Instance(b.InstanceID()).Send(ctx)
		if err != nil || string(got) != "b:"+p {
			t.Fatalf("a→b #%d = %q, %v; want b:%s", i, got, err, p)
		}
	}
	if n := ta.dials.Load(); n != 1 {
		t.Errorf("a dialed %d times, want 1", n)
	}
	if n := tb.dials.Load(); n != 0 {
		t.Errorf("b dialed %d times, want 0: it should answer and call over a's connection", n)
	}
}

func TestListHandlersOverTheWire(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			names, err := a.ListHandlers(ctx, b.InstanceID())
			if err != nil || len(names) != 0 {
				t.Fatalf("ListHandlers of an instance with no user handler = %q, %v; want none", names, err)
			}
			noop := func(context.Context, *velo.Context) error { return nil }
			for _, n := range []string{"zeta", "alpha", "mid", "Beta"} {
				mustRegister(t, b, velo.AMHandler(n, noop))
			}
			mustRegister(t, a, velo.AMHandler("only-on-a", noop))
			names, err = a.ListHandlers(ctx, b.InstanceID())
			if err != nil {
				t.Fatalf("ListHandlers: %v", err)
			}
			want := []string{"Beta", "alpha", "mid", "zeta"}
			if !slices.Equal(names, want) {
				t.Fatalf("ListHandlers = %q, want %q", names, want)
			}
		})
	}
}

func TestCallOwnHandlers(t *testing.T) {
	for _, tc := range []struct {
		name string
		mk   func(t *testing.T) *velo.Messenger
	}{
		{"tcp", func(t *testing.T) *velo.Messenger { return newMessenger(t, velo.Options{}) }},
		{"mem", func(t *testing.T) *velo.Messenger { return newMessenger(t, velo.Options{}, mem.New(mem.NewNetwork())) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			m := tc.mk(t)
			senders := make(chan peer.ID, 2)
			mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
				senders <- c.Sender
				return c.Payload, nil
			}))
			got, err := m.Unary("echo").RawPayload([]byte("me")).Instance(m.InstanceID()).Send(ctx)
			if err != nil || string(got) != "me" {
				t.Fatalf("self Unary = %q, %v", got, err)
			}
			if s := recvOrFail(t, ctx, senders, "sender"); s != m.InstanceID() {
				t.Errorf("Sender = %s, want self %s", s, m.InstanceID())
			}
			if err := m.AMSync("echo").Instance(m.InstanceID()).Send(ctx); err != nil {
				t.Fatalf("self AMSync: %v", err)
			}
			recvOrFail(t, ctx, senders, "sender")
			names, err := m.ListHandlers(ctx, m.InstanceID())
			if err != nil || !slices.Equal(names, []string{"echo"}) {
				t.Fatalf("self ListHandlers = %q, %v; want [echo]", names, err)
			}
		})
	}
}

func TestRegisterHandlerRefusals(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	first := velo.UnaryHandler("dup", func(context.Context, *velo.Context) ([]byte, error) { return []byte("first"), nil })
	mustRegister(t, b, first)
	second := velo.UnaryHandler("dup", func(context.Context, *velo.Context) ([]byte, error) { return []byte("second"), nil })
	err := b.RegisterHandler(second.Build())
	if !errors.Is(err, velo.ErrHandlerExists) {
		t.Errorf("duplicate name: err = %v, want ErrHandlerExists", err)
	}
	got, err := a.Unary("dup").Instance(b.InstanceID()).Send(ctx)
	if err != nil || string(got) != "first" {
		t.Errorf("after the refused duplicate, dup answers %q, %v; want first", got, err)
	}

	noop := func(context.Context, *velo.Context) error { return nil }
	refused := []struct {
		name string
		h    *velo.Handler
	}{
		{"reserved name", velo.AMHandler("_x", noop).Build()},
		{"reserved system name", velo.AMHandler("_list_handlers", noop).Build()},
		{"empty name", velo.AMHandler("", noop).Build()},
		{"nil AM function", velo.AMHandler("nil-am", nil).Build()},
		{"nil unary function", velo.UnaryHandler("nil-unary", nil).Build()},
		{"nil typed function", velo.TypedUnaryHandler[tuOrder, tuReceipt]("nil-typed", nil).Build()},
		{"nil AM factory", velo.AMHandlerFactory("nil-factory", nil).Build()},
		{"mailbox 0", velo.AMHandler("mbox0", noop).Mailbox(0).Build()},
		{"mailbox -1", velo.AMHandler("mbox-neg", noop).Mailbox(-1).Build()},
		{"nil handler", nil},
	}
	for _, r := range refused {
		err := b.RegisterHandler(r.h)
		if err == nil {
			t.Errorf("%s: RegisterHandler accepted it", r.name)
			continue
		}
		if errors.Is(err, velo.ErrHandlerExists) {
			t.Errorf("%s: err = %v, should not be ErrHandlerExists", r.name, err)
		}
	}
	// A refusal reserves nothing: the names are still free.
	mustRegister(t, b, velo.AMHandler("mbox0", noop).Mailbox(1))
	mustRegister(t, b, velo.AMHandler("nil-am", noop))
	names, err := a.ListHandlers(ctx, b.InstanceID())
	if err != nil || !slices.Equal(names, []string{"dup", "mbox0", "nil-am"}) {
		t.Errorf("ListHandlers = %q, %v; want [dup mbox0 nil-am]", names, err)
	}
}

func TestDiscoveryFindsPeerWithoutRegisterPeer(t *testing.T) {
	ctx := testCtx(t)
	d := discovery.NewMemory()
	build := func() *velo.Messenger {
		m, err := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{})).Discovery(d).Build(ctx)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := m.Shutdown(sctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
		return m
	}
	a, b := build(), build()
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return append([]byte("b got "), c.Payload...), nil
	}))
	got, err := a.Unary("echo").RawPayload([]byte("hi")).Instance(b.InstanceID()).Send(ctx)
	if err != nil || string(got) != "b got hi" {
		t.Fatalf("a→b through discovery = %q, %v", got, err)
	}
	// An id the registry does not know is still unknown.
	_, err = a.Unary("echo").Instance(peer.NewID()).Send(ctx)
	if !errors.Is(err, velo.ErrPeerUnknown) {
		t.Fatalf("unknown id with discovery: err = %v, want ErrPeerUnknown", err)
	}
}
