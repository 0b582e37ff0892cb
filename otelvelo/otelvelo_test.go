package otelvelo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/otelvelo"
	"github.com/velo-messenger/velo/transport/mem"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// instance starts a messenger on n with both interceptors and hs.
func instance(t *testing.T, n *mem.Network, opts []otelvelo.Option, hs ...*velo.HandlerBuilder) *velo.Messenger {
	t.Helper()
	b := velo.NewBuilder().AddTransport(mem.New(n)).
		ClientInterceptor(otelvelo.ClientInterceptor(opts...)).
		ServerInterceptor(otelvelo.ServerInterceptor(opts...))
	for _, h := range hs {
		b.Handle(h.Build())
	}
	m, err := b.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m
}

// TestTraceAcrossThreeInstances: A calls B, whose handler calls C. All
// spans share one trace; each server span is the child of the client span
// that called it, B's client span the child of B's server span; names
// and methods are the handlers'; C's error marks C's server span and, as
// B passes it on, B's and A's.
func TestTraceAcrossThreeInstances(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	opts := []otelvelo.Option{otelvelo.WithTracerProvider(tp), otelvelo.WithMeterProvider(sdkmetric.NewMeterProvider())}
	n := mem.NewNetwork()
	c := instance(t, n, opts, velo.UnaryHandler("leaf", func(_ context.Context, vc *velo.Context) ([]byte, error) {
		if string(vc.Payload) == "fail" {
			return nil, errors.New("leaf failed")
		}
		return []byte("leaf ok"), nil
	}))
	b := instance(t, n, opts, velo.UnaryHandler("middle", func(ctx context.Context, vc *velo.Context) ([]byte, error) {
		return vc.Msg.Unary("leaf").RawPayload(vc.Payload).Instance(c.InstanceID()).Send(ctx)
	}))
	a := instance(t, n, opts)
	for _, pair := range [][2]*velo.Messenger{{a, b}, {b, c}} {
		if err := pair[0].RegisterPeer(pair[1].PeerInfo()); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, payload := range []string{"ok", "fail"} {
		rec.Reset()
		_, err := a.Unary("middle").RawPayload([]byte(payload)).Instance(b.InstanceID()).Send(ctx)
		if (payload == "fail") != (err != nil) {
			t.Fatalf("%s: %v", payload, err)
		}
		spans := rec.Ended()
		if len(spans) != 4 {
			t.Fatalf("%s: %d spans, want 4 (A client, B server, B client, C server)", payload, len(spans))
		}
		by := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			by[s.SpanKind().String()+" "+s.Name()] = s
		}
		aClient, bServer := by["client velo/middle"], by["server velo/middle"]
		bClient, cServer := by["client velo/leaf"], by["server velo/leaf"]
		if aClient == nil || bServer == nil || bClient == nil || cServer == nil {
			t.Fatalf("%s: spans %v", payload, keys(by))
		}
		tid := aClient.SpanContext().TraceID()
		for _, s := range spans {
			if s.SpanContext().TraceID() != tid {
				t.Errorf("%s: span %s in trace %v, want %v", payload, s.Name(), s.SpanContext().TraceID(), tid)
			}
		}
		parent := func(child, of sdktrace.ReadOnlySpan) {
			t.Helper()
			if child.Parent().SpanID() != of.SpanContext().SpanID() {
				t.Errorf("%s: %s %s is not the child of %s %s", payload, child.SpanKind(), child.Name(), of.SpanKind(), of.Name())
			}
		}
		parent(bServer, aClient)
		parent(bClient, bServer)
		parent(cServer, bClient)
		for _, s := range spans {
			if method := attr(s, "rpc.method"); "velo/"+method != s.Name() || attr(s, "rpc.system") != "velo" {
				t.Errorf("%s: span %s has rpc.method %q, rpc.system %q", payload, s.Name(), method, attr(s, "rpc.system"))
			}
			failed := s.Status().Code == codes.Error
			if failed != (payload == "fail") {
				t.Errorf("%s: span %s %s status %v", payload, s.SpanKind(), s.Name(), s.Status())
			}
		}
		if payload == "fail" && attr(cServer, "velo.code") != velo.CodeHandlerError.String() {
			t.Errorf("C's server span velo.code %q", attr(cServer, "velo.code"))
		}
		if aClient.SpanKind() != trace.SpanKindClient {
			t.Errorf("A's span kind %v", aClient.SpanKind())
		}
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestMetricsCountCallsAndErrors: after N calls of which K fail, the
// request counters say N, K of them with the error's code, and the
// duration histograms hold N samples, on both sides.
func TestMetricsCountCallsAndErrors(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	opts := []otelvelo.Option{otelvelo.WithMeterProvider(mp), otelvelo.WithTracerProvider(sdktrace.NewTracerProvider())}
	n := mem.NewNetwork()
	s := instance(t, n, opts, velo.UnaryHandler("job", func(_ context.Context, vc *velo.Context) ([]byte, error) {
		if string(vc.Payload) == "bad" {
			return nil, velo.ErrBusy
		}
		return nil, nil
	}))
	c := instance(t, n, opts)
	if err := c.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	const total, failing = 30, 7
	for i := range total {
		p := "good"
		if i < failing {
			p = "bad"
		}
		c.Unary("job").RawPayload([]byte(p)).Instance(s.InstanceID()).Send(context.Background())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"client", "server"} {
		counts := map[string]int64{}
		var samples uint64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					if m.Name != "velo."+side+".requests" {
						continue
					}
					for _, p := range d.DataPoints {
						if v, ok := p.Attributes.Value(attribute.Key("rpc.method")); ok && v.AsString() == "job" {
							code, _ := p.Attributes.Value(attribute.Key("velo.code"))
							counts[code.AsString()] += p.Value
						}
					}
				case metricdata.Histogram[float64]:
					if m.Name != "rpc."+side+".duration" {
						continue
					}
					for _, p := range d.DataPoints {
						if v, ok := p.Attributes.Value(attribute.Key("rpc.method")); ok && v.AsString() == "job" {
							samples += p.Count
						}
					}
				}
			}
		}
		if counts["ok"] != total-failing || counts[velo.CodeBusy.String()] != failing || samples != total {
			t.Errorf("%s: requests by code %v, %d duration samples; want %d ok, %d busy, %d samples", side, counts, samples, total-failing, failing, total)
		}
	}
}

// TestStatsGauges: the gauges follow Stats: a handler's in-flight
// request, the connection, the caller's pending call.
func TestStatsGauges(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	n := mem.NewNetwork()
	release := make(chan struct{})
	s := instance(t, n, nil, velo.UnaryHandler("hold", func(context.Context, *velo.Context) ([]byte, error) {
		<-release
		return nil, nil
	}))
	c := instance(t, n, nil)
	if err := c.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	sreg, err := otelvelo.RegisterStats(s, otelvelo.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer sreg.Unregister()
	done := make(chan error, 1)
	go func() {
		_, err := c.Unary("hold").Instance(s.InstanceID()).Send(context.Background())
		done <- err
	}()
	gauge := func(name, method string) int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				g, ok := m.Data.(metricdata.Gauge[int64])
				if !ok || m.Name != name {
					continue
				}
				for _, p := range g.DataPoints {
					v, _ := p.Attributes.Value(attribute.Key("rpc.method"))
					if v.AsString() == method {
						return p.Value
					}
				}
			}
		}
		return -1
	}
	deadline := time.Now().Add(5 * time.Second)
	for gauge("velo.handler.in_flight", "hold") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("in_flight gauge %d, want 1", gauge("velo.handler.in_flight", "hold"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := gauge("velo.handler.mailbox.depth", "hold"); got != 1 {
		t.Errorf("mailbox depth gauge %d, want 1", got)
	}
	if got := gauge("velo.connections", ""); got != 1 {
		t.Errorf("connections gauge %d, want 1", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
