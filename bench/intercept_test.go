package main

import (
	"context"
	"testing"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport/mem"
)

// BenchmarkUnaryMemIntercepted is BenchmarkUnaryMem with an empty client
// interceptor on the caller and an empty server interceptor on the
// callee: what the interceptor chain costs when it does nothing.
func BenchmarkUnaryMemIntercepted(b *testing.B) {
	ctx := context.Background()
	n := mem.NewNetwork()
	start := func(bld *velo.Builder) *velo.Messenger { return startBench(b, bld.AddTransport(mem.New(n))) }
	server := start(velo.NewBuilder().
		ServerInterceptor(func(ctx context.Context, c *velo.Context, next func(context.Context, *velo.Context) ([]byte, error)) ([]byte, error) {
			return next(ctx, c)
		}).
		Handle(velo.UnaryHandler(echoHandler, echo).Build()))
	client := start(velo.NewBuilder().
		ClientInterceptor(func(ctx context.Context, c *velo.Call, next func(context.Context, *velo.Call) ([]byte, error)) ([]byte, error) {
			return next(ctx, c)
		}))
	if err := client.RegisterPeer(server.PeerInfo()); err != nil {
		b.Fatal(err)
	}
	p := benchPayload()
	id := server.InstanceID()
	if _, err := client.Unary(echoHandler).RawPayload(p).Instance(id).Send(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		out, err := client.Unary(echoHandler).RawPayload(p).Instance(id).Send(ctx)
		if err != nil || len(out) != len(p) {
			b.Fatalf("echo: %d bytes, %v", len(out), err)
		}
	}
}
