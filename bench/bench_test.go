package main

// Micro-benchmarks of velo's calls, with the plain TCP ping-pong beside
// them:
//
//	go test -C bench -run '^$' -bench . -benchmem .
//
// Both messengers of the in-process benchmarks live in this process, so
// their allocs/op count the client's and the server's allocations
// together. BenchmarkUnaryTCPRemote has its server in a child process:
// its allocs/op are the client's alone, the figure that velo's goals of at
// most 2 allocations per raw unary round trip and 6 per typed one are
// about (maxUnaryAllocs, maxTypedAllocs; BenchmarkTypedUnaryTCPRemote).
// BenchmarkUnaryNATS starts an embedded nats-server of its own.

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
)

// benchPayloadSize is the raw payload of every benchmark: 32 B, the size
// of the suite's headline figures (docs/performance.md).
const benchPayloadSize = 32

func benchPayload() []byte {
	p := make([]byte, benchPayloadSize)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func tcpTransport() transport.Transport { return tcp.New(tcp.Options{}) }

// transportsOf returns a constructor of the named velo transport, as the
// bench's systems make it.
func transportsOf(b *testing.B, name string, e env) func() transport.Transport {
	return func() transport.Transport {
		t, err := newVeloTransport(name, e)
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
}

func memTransports() func() transport.Transport {
	n := mem.NewNetwork()
	return func() transport.Transport { return mem.New(n) }
}

// startBench builds the messenger bld describes and shuts it down when
// the benchmark ends.
func startBench(b *testing.B, bld *velo.Builder) *velo.Messenger {
	b.Helper()
	m, err := bld.Build(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := shutdown(m); err != nil {
			b.Error(err)
		}
	})
	return m
}

// veloPair starts a server messenger with the handlers and a client
// messenger that knows it, on transports made by mk, and shuts both down
// when the benchmark ends. It returns the client and the server's id.
func veloPair(b *testing.B, mk func() transport.Transport, handlers ...*velo.HandlerBuilder) (*velo.Messenger, peer.ID) {
	b.Helper()
	start := func() *velo.Messenger { return startBench(b, velo.NewBuilder().AddTransport(mk())) }
	server := start()
	for _, h := range handlers {
		if err := server.RegisterHandler(h.Build()); err != nil {
			b.Fatal(err)
		}
	}
	client := start()
	if err := client.RegisterPeer(server.PeerInfo()); err != nil {
		b.Fatal(err)
	}
	return client, server.InstanceID()
}

// benchUnary measures a raw unary echo call. The first call, which opens
// the connection, is made before the timed loop.
func benchUnary(b *testing.B, mk func() transport.Transport, h *velo.HandlerBuilder) {
	benchUnaryCtx(b, context.Background(), mk, h)
}

// benchUnaryCtx is benchUnary with every call made with ctx.
func benchUnaryCtx(b *testing.B, ctx context.Context, mk func() transport.Transport, h *velo.HandlerBuilder) {
	c, id := veloPair(b, mk, h)
	p := benchPayload()
	if _, err := c.Unary(echoHandler).RawPayload(p).Instance(id).Send(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.Unary(echoHandler).RawPayload(p).Instance(id).Send(ctx)
		if err != nil || len(out) != len(p) {
			b.Fatalf("echo: %d bytes, %v", len(out), err)
		}
	}
}

// BenchmarkUnaryTCPDeadline is BenchmarkUnaryTCP with a ctx that has a
// deadline, as most callers' have: the request carries its timeout, and
// the handler's ctx gets one.
func BenchmarkUnaryTCPDeadline(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	benchUnaryCtx(b, ctx, tcpTransport, velo.UnaryHandler(echoHandler, echo))
}

func BenchmarkUnaryMem(b *testing.B) {
	benchUnary(b, memTransports(), velo.UnaryHandler(echoHandler, echo))
}

func BenchmarkUnaryTCP(b *testing.B) {
	benchUnary(b, tcpTransport, velo.UnaryHandler(echoHandler, echo))
}

func BenchmarkUnaryTCPInline(b *testing.B) {
	benchUnary(b, tcpTransport, velo.UnaryHandler(echoHandler, echo).Inline())
}

func BenchmarkUnaryUDS(b *testing.B) {
	benchUnary(b, transportsOf(b, "uds", env{}), velo.UnaryHandler(echoHandler, echo))
}

func BenchmarkUnaryHTTP(b *testing.B) {
	benchUnary(b, transportsOf(b, "http", env{}), velo.UnaryHandler(echoHandler, echo))
}

func BenchmarkUnaryH2C(b *testing.B) {
	benchUnary(b, transportsOf(b, "h2c", env{}), velo.UnaryHandler(echoHandler, echo))
}

func BenchmarkUnaryGRPC(b *testing.B) {
	benchUnary(b, transportsOf(b, "grpc", env{}), velo.UnaryHandler(echoHandler, echo))
}

// BenchmarkUnaryNATS goes through an embedded nats-server in this process,
// started for the benchmark only.
func BenchmarkUnaryNATS(b *testing.B) {
	ns, err := serveNATSServer(context.Background(), env{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close() })
	benchUnary(b, transportsOf(b, "nats", env{natsURL: ns.Addr()}), velo.UnaryHandler(echoHandler, echo))
}

// BenchmarkUnaryTCPParallel has many goroutines share one client
// messenger, hence one connection: 8 callers per GOMAXPROCS.
func BenchmarkUnaryTCPParallel(b *testing.B) {
	c, id := veloPair(b, tcpTransport, velo.UnaryHandler(echoHandler, echo))
	ctx := context.Background()
	p := benchPayload()
	if _, err := c.Unary(echoHandler).RawPayload(p).Instance(id).Send(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			out, err := c.Unary(echoHandler).RawPayload(p).Instance(id).Send(ctx)
			if err != nil || len(out) != len(p) {
				b.Errorf("echo: %d bytes, %v", len(out), err)
				return
			}
		}
	})
}

// BenchmarkUnaryTCPRemote is BenchmarkUnaryTCP with the server in a child
// process (this test binary started again as a velo-unary server), so that
// B/op and allocs/op are the client's alone.
func BenchmarkUnaryTCPRemote(b *testing.B) {
	c := remoteVelo(b, velo.Options{})
	ctx := context.Background()
	p := benchPayload()
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.m.Unary(echoHandler).RawPayload(p).Instance(c.server).Send(ctx)
		if err != nil || len(out) != len(p) {
			b.Fatalf("echo: %d bytes, %v", len(out), err)
		}
	}
}

// BenchmarkTypedUnaryTCPRemote is BenchmarkTypedUnaryTCP's call (a
// struct each way) to a server in a child process: allocs/op are the
// client's alone.
func BenchmarkTypedUnaryTCPRemote(b *testing.B) {
	c := remoteVelo(b, velo.Options{})
	ctx := context.Background()
	in := typedMsg{ID: 7, Name: "typed-unary", Data: benchPayload()}
	b.ReportAllocs()
	for b.Loop() {
		out, err := velo.TypedUnary[typedMsg](c.m, typedHandler).Payload(in).Instance(c.server).Send(ctx)
		if err != nil || out.ID != in.ID {
			b.Fatalf("typed: %+v, %v", out, err)
		}
	}
}

// remoteVelo starts a velo server over TCP in a child process (this test
// binary started again as the velo/tcp server) and connects a client
// messenger to it; both end with the test.
func remoteVelo(tb testing.TB, o velo.Options) *veloConn {
	tb.Helper()
	name := veloServerFor("tcp")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+name)
	ch, err := startChild(name, cmd, os.Stderr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := ch.stop(); err != nil {
			tb.Error(err)
		}
	})
	c, err := dialVeloConn(context.Background(), "tcp", env{}, ch.addr, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// BenchmarkAMSendTCP measures one sender's fire-and-forget throughput to
// a handler that counts. The time includes waiting, after the loop, until
// the handler has seen every message, so ns/op is the cost of a delivered
// message, not of a queued one.
func BenchmarkAMSendTCP(b *testing.B) {
	var got atomic.Int64
	sink := velo.AMHandler("sink", func(context.Context, *velo.Context) error {
		got.Add(1)
		return nil
	})
	c, id := veloPair(b, tcpTransport, sink)
	ctx := context.Background()
	p := benchPayload()
	if err := c.AMSync("sink").RawPayload(p).Instance(id).Send(ctx); err != nil {
		b.Fatal(err) // connects; AMSync returns after the handler ran
	}
	got.Store(0)
	var sent int64
	b.ReportAllocs()
	for b.Loop() {
		if err := c.AMSend("sink").RawPayload(p).Instance(id).Send(ctx); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	b.StartTimer()
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < sent {
		if time.Now().After(deadline) {
			b.Fatalf("handler saw %d of %d messages", got.Load(), sent)
		}
		runtime.Gosched()
	}
	b.StopTimer()
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkNATSPubSub is BenchmarkAMSendTCP's peer: one publisher's
// messages to one subscriber that counts, through an embedded nats-server
// in this process, timed until the subscriber has seen every message.
func BenchmarkNATSPubSub(b *testing.B) {
	ctx := context.Background()
	ns, err := serveNATSServer(ctx, env{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close() })
	e := env{natsURL: ns.Addr()}
	sub, err := serveNATSPub(ctx, e)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sub.Close() })
	c, err := dialNATSPub(ctx, e, sub.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	st := c.(Streamer)
	p := benchPayload()
	if err := st.Stream(ctx, p, 1000); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := st.Stream(ctx, p, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

type addRequest struct {
	A, B int64
	Tag  string
}

type addResponse struct {
	Sum int64
	Tag string
}

// BenchmarkTypedUnaryTCP is a typed unary call: a small struct encoded with
// MessagePack each way.
func BenchmarkTypedUnaryTCP(b *testing.B) {
	add := velo.TypedUnaryHandler("add", func(_ context.Context, c *velo.TypedContext[addRequest]) (addResponse, error) {
		return addResponse{Sum: c.Input.A + c.Input.B, Tag: c.Input.Tag}, nil
	})
	c, id := veloPair(b, tcpTransport, add)
	ctx := context.Background()
	req := addRequest{A: 40, B: 2, Tag: "typed-unary-bench"}
	if _, err := velo.TypedUnary[addResponse](c, "add").Payload(req).Instance(id).Send(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := velo.TypedUnary[addResponse](c, "add").Payload(req).Instance(id).Send(ctx)
		if err != nil || r.Sum != 42 {
			b.Fatalf("add: %+v, %v", r, err)
		}
	}
}

// BenchmarkFloorTCP is the plain Go TCP ping-pong of tcp-floor, server and
// client in this process.
func BenchmarkFloorTCP(b *testing.B) {
	ctx := context.Background()
	srv, err := serveFloor(ctx, env{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	c, err := dialFloor(ctx, env{}, srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	rt := c.(RoundTripper)
	p := benchPayload()
	b.ReportAllocs()
	for b.Loop() {
		if err := rt.RoundTrip(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
