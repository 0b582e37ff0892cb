package main

import (
	"context"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/transport"
)

// benchService is benchUnary with the call routed by .Service among n
// instances found through discovery, instead of sent to one by
// .Instance: the difference between the two is what routing costs (the
// pick, the in-flight count and the latency sample).
func benchService(b *testing.B, mk func() transport.Transport, n int) {
	ctx := context.Background()
	d := discovery.NewMemory()
	start := func(bld *velo.Builder) *velo.Messenger { return startBench(b, bld.AddTransport(mk()).Discovery(d)) }
	for range n {
		start(velo.NewBuilder().Service("bench").Handle(velo.UnaryHandler(echoHandler, echo).Build()))
	}
	c := start(velo.NewBuilder())
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for list := range c.WatchInstances(wctx, "bench") {
		if len(list) == n {
			break
		}
	}
	p := benchPayload()
	for range 8 * n { // open every connection before the timed loop
		if _, err := c.Unary(echoHandler).RawPayload(p).Service("bench").Send(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.Unary(echoHandler).RawPayload(p).Service("bench").Send(ctx)
		if err != nil || len(out) != len(p) {
			b.Fatalf("echo: %d bytes, %v", len(out), err)
		}
	}
}

// BenchmarkUnaryMemService is BenchmarkUnaryMem routed by service to its
// single instance.
func BenchmarkUnaryMemService(b *testing.B) { benchService(b, memTransports(), 1) }

// BenchmarkUnaryMemService8 routes among 8 instances.
func BenchmarkUnaryMemService8(b *testing.B) { benchService(b, memTransports(), 8) }

// BenchmarkUnaryTCPService is BenchmarkUnaryTCP routed by service.
func BenchmarkUnaryTCPService(b *testing.B) { benchService(b, tcpTransport, 1) }
