package otelvelo

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/velo-messenger/velo"
)

// RegisterStats adds observable gauges fed by m.Stats(), read at each
// collection: velo.handler.in_flight and velo.handler.mailbox.depth (per
// handler, attribute rpc.method), velo.connections and
// velo.calls.pending (per instance). Only WithMeterProvider applies.
// Unregister the returned registration before m shuts down, or let the
// meter provider's shutdown end it.
func RegisterStats(m *velo.Messenger, opts ...Option) (metric.Registration, error) {
	c := config{mp: otel.GetMeterProvider()}
	for _, o := range opts {
		o(&c)
	}
	meter := c.mp.Meter(scope)
	inFlight, err := meter.Int64ObservableGauge("velo.handler.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("Requests queued or running, per handler."))
	if err != nil {
		return nil, err
	}
	depth, err := meter.Int64ObservableGauge("velo.handler.mailbox.depth", metric.WithUnit("{request}"),
		metric.WithDescription("Mailbox slots taken, per handler."))
	if err != nil {
		return nil, err
	}
	conns, err := meter.Int64ObservableGauge("velo.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("Open connections whose handshake completed."))
	if err != nil {
		return nil, err
	}
	pending, err := meter.Int64ObservableGauge("velo.calls.pending", metric.WithUnit("{call}"),
		metric.WithDescription("This instance's calls waiting for an answer."))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := m.Stats()
		for name, h := range st.Handlers {
			set := metric.WithAttributes(attribute.String("rpc.method", name))
			o.ObserveInt64(inFlight, h.InFlight, set)
			o.ObserveInt64(depth, int64(h.MailboxDepth), set)
		}
		o.ObserveInt64(conns, int64(st.Totals.Connections))
		var n int64
		for _, p := range st.Peers {
			n += int64(p.CallsPending)
		}
		o.ObserveInt64(pending, n)
		return nil
	}, inFlight, depth, conns, pending)
}
