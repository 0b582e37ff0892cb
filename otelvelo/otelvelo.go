// Package otelvelo traces and measures velo calls with OpenTelemetry. It is
// a module of its own, so that velo's core needs no OpenTelemetry.
//
//	m, err := velo.NewBuilder().
//		ClientInterceptor(otelvelo.ClientInterceptor()).
//		ServerInterceptor(otelvelo.ServerInterceptor()).
//		Build(ctx)
//
// The client interceptor starts a span per call (kind Client for AMSync and
// Unary, Producer for AMSend) and injects its context into the call's
// headers with the configured propagators (W3C trace context and baggage
// by default); the server interceptor extracts it and starts the handler's
// span (kind Server, for every pattern) under it. Span names are
// "velo/<handler>"; attributes follow the OpenTelemetry RPC conventions
// (rpc.system "velo", rpc.method the handler, rpc.service the service when
// the call is routed by one) plus velo.code, the velo error code of a
// failed call; a failed call's span has status Error.
//
// Metrics, on the configured meter provider: rpc.client.duration and
// rpc.server.duration (histograms, seconds) and velo.client.requests and
// velo.server.requests (counters), each with rpc.system, rpc.method and
// velo.code ("ok" for a success).
package otelvelo

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/velo-messenger/velo"
)

const scope = "github.com/velo-messenger/velo/otelvelo"

// Option configures the interceptors.
type Option func(*config)

type config struct {
	tp    trace.TracerProvider
	mp    metric.MeterProvider
	props propagation.TextMapPropagator
}

// WithTracerProvider sets where spans go; default: otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets where metrics go; default: otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithPropagators sets how span context and baggage travel in headers;
// default: otel.GetTextMapPropagator() if one is set, else W3C trace
// context and baggage.
func WithPropagators(p propagation.TextMapPropagator) Option { return func(c *config) { c.props = p } }

// durationBuckets are the bounds of the duration histograms, in seconds:
// 50 µs doubling to about 13 s, as velo.Stats.
var durationBuckets = func() []float64 {
	var b []float64
	for d := 50e-6; d < 15; d *= 2 {
		b = append(b, d)
	}
	return b
}()

// instruments are one side's tracer and metrics.
type instruments struct {
	tracer   trace.Tracer
	props    propagation.TextMapPropagator
	duration metric.Float64Histogram
	requests metric.Int64Counter
}

func newInstruments(side string, opts []Option) instruments {
	c := config{tp: otel.GetTracerProvider(), mp: otel.GetMeterProvider(), props: otel.GetTextMapPropagator()}
	if len(c.props.Fields()) == 0 {
		c.props = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	for _, o := range opts {
		o(&c)
	}
	meter := c.mp.Meter(scope)
	// Instrument errors come from invalid names only; these are valid.
	dur, _ := meter.Float64Histogram("rpc."+side+".duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of velo calls, as the "+side+" sees them."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	req, _ := meter.Int64Counter("velo."+side+".requests", metric.WithUnit("{request}"),
		metric.WithDescription("velo calls, by handler and outcome, as the "+side+" sees them."))
	return instruments{tracer: c.tp.Tracer(scope), props: c.props, duration: dur, requests: req}
}

// outcome is the velo.code attribute of a call's end.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var ve *velo.Error
	if errors.As(err, &ve) {
		return ve.Code.String()
	}
	return velo.CodeHandlerError.String()
}

func (in instruments) end(ctx context.Context, span trace.Span, start time.Time, attrs []attribute.KeyValue, err error) {
	code := outcome(err)
	attrs = append(attrs, attribute.String("velo.code", code))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attribute.String("velo.code", code))
	}
	span.End()
	set := metric.WithAttributes(attrs...)
	in.duration.Record(ctx, time.Since(start).Seconds(), set)
	in.requests.Add(ctx, 1, set)
}

func baseAttrs(handler string) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("rpc.system", "velo"), attribute.String("rpc.method", handler)}
}

// ClientInterceptor traces and measures every outgoing call.
func ClientInterceptor(opts ...Option) velo.ClientInterceptor {
	in := newInstruments("client", opts)
	return func(ctx context.Context, call *velo.Call, next func(context.Context, *velo.Call) ([]byte, error)) ([]byte, error) {
		kind := trace.SpanKindClient
		if call.Pattern == velo.AMSend {
			kind = trace.SpanKindProducer
		}
		attrs := baseAttrs(call.Handler)
		if call.Service != "" {
			attrs = append(attrs, attribute.String("rpc.service", call.Service))
		}
		ctx, span := in.tracer.Start(ctx, "velo/"+call.Handler, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
		if !call.Target.IsZero() {
			span.SetAttributes(attribute.String("velo.target", call.Target.String()))
		}
		headers := make(map[string]string, len(call.Headers)+2)
		for k, v := range call.Headers {
			headers[k] = v
		}
		in.props.Inject(ctx, propagation.MapCarrier(headers))
		call.Headers = headers
		start := time.Now()
		out, err := next(ctx, call)
		in.end(ctx, span, start, attrs, err)
		return out, err
	}
}

// ServerInterceptor traces and measures every handler run, under the span
// context its caller sent.
func ServerInterceptor(opts ...Option) velo.ServerInterceptor {
	in := newInstruments("server", opts)
	return func(ctx context.Context, c *velo.Context, next func(context.Context, *velo.Context) ([]byte, error)) ([]byte, error) {
		ctx = in.props.Extract(ctx, propagation.MapCarrier(c.Headers))
		attrs := baseAttrs(c.Handler)
		ctx, span := in.tracer.Start(ctx, "velo/"+c.Handler, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		span.SetAttributes(attribute.String("velo.sender", c.Sender.String()))
		if c.Identity != "" {
			span.SetAttributes(attribute.String("velo.identity", c.Identity))
		}
		start := time.Now()
		out, err := next(ctx, c)
		in.end(ctx, span, start, attrs, err)
		return out, err
	}
}
