package otelvelo_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/otelvelo"
	"github.com/velo-messenger/velo/transport/mem"
)

// benchUnary measures a unary echo over the in-memory transport, with the
// OpenTelemetry interceptors on both sides when traced (every span
// sampled, recorded by the SDK, exported nowhere), or with none.
func benchUnary(b *testing.B, traced bool) {
	ctx := context.Background()
	n := mem.NewNetwork()
	var opts []otelvelo.Option
	if traced {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { tp.Shutdown(ctx); mp.Shutdown(ctx) })
		opts = []otelvelo.Option{otelvelo.WithTracerProvider(tp), otelvelo.WithMeterProvider(mp)}
	}
	start := func(bld *velo.Builder) *velo.Messenger {
		if traced {
			bld.ClientInterceptor(otelvelo.ClientInterceptor(opts...)).ServerInterceptor(otelvelo.ServerInterceptor(opts...))
		}
		m, err := bld.AddTransport(mem.New(n)).Build(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Shutdown(ctx) })
		return m
	}
	s := start(velo.NewBuilder().Handle(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build()))
	c := start(velo.NewBuilder())
	if err := c.RegisterPeer(s.PeerInfo()); err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 32)
	id := s.InstanceID()
	if _, err := c.Unary("echo").RawPayload(p).Instance(id).Send(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Unary("echo").RawPayload(p).Instance(id).Send(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnaryMemPlain(b *testing.B)  { benchUnary(b, false) }
func BenchmarkUnaryMemTraced(b *testing.B) { benchUnary(b, true) }
