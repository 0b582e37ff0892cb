// Command observability runs a small velo workload traced and measured by
// otelvelo, and serves its metrics in the Prometheus exposition format
// through the OpenTelemetry Prometheus exporter.
//
//	go run ./examples/observability [-addr 127.0.0.1:9464] [-calls 100] [-serve 30s]
//
// (from the otelvelo module.) It prints the URL of /metrics, makes -calls
// calls from one instance to another's "work" handler (one in five fails
// on purpose, answering busy), prints "workload done", and serves /metrics
// for -serve more, or until interrupted. Scrape it with Prometheus, or:
//
//	curl -s http://127.0.0.1:9464/metrics | grep velo_
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/otelvelo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "where to serve /metrics (port 0: any)")
	calls := flag.Int("calls", 100, "calls in the workload")
	serve := flag.Duration("serve", 30*time.Second, "how long to serve /metrics after the workload")
	flag.Parse()
	if err := run(*addr, *calls, *serve); err != nil {
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(1)
	}
}

func run(addr string, calls int, serve time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	reg := promclient.NewRegistry()
	exporter, err := prometheus.New(prometheus.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())
	tp := sdktrace.NewTracerProvider() // spans recorded, exported nowhere: add an exporter here
	defer tp.Shutdown(context.Background())
	opts := []otelvelo.Option{otelvelo.WithMeterProvider(mp), otelvelo.WithTracerProvider(tp)}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Printf("metrics at http://%s/metrics\n", ln.Addr())

	worker, err := velo.NewBuilder().
		ServerInterceptor(otelvelo.ServerInterceptor(opts...)).
		Handle(velo.UnaryHandler("work", func(_ context.Context, c *velo.Context) ([]byte, error) {
			if c.Payload[0]%5 == 0 {
				return nil, velo.ErrBusy
			}
			return []byte("done"), nil
		}).Build()).
		Build(ctx)
	if err != nil {
		return err
	}
	defer shutdown(worker)
	caller, err := velo.NewBuilder().ClientInterceptor(otelvelo.ClientInterceptor(opts...)).Build(ctx)
	if err != nil {
		return err
	}
	defer shutdown(caller)
	if err := caller.RegisterPeer(worker.PeerInfo()); err != nil {
		return err
	}
	failed := 0
	for i := range calls {
		_, err := caller.Unary("work").RawPayload([]byte{byte(i)}).Instance(worker.InstanceID()).Send(ctx)
		switch {
		case errors.Is(err, velo.ErrBusy):
			failed++
		case err != nil:
			return err
		}
	}
	fmt.Printf("workload done: %d calls, %d answered busy\n", calls, failed)
	select {
	case <-time.After(serve):
	case <-ctx.Done():
	}
	return nil
}

func shutdown(m *velo.Messenger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.Shutdown(ctx)
}
