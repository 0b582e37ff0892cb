package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/file"
	"github.com/velo-messenger/velo/discovery/natskv"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/http"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// target is what a subcommand talks to: one instance, or a service whose
// instance velo picks for each call.
type target struct {
	m       *velo.Messenger
	id      peer.ID // zero for a service
	service string
	close   func()
}

// instance is the one instance of t, for the subcommands that ask an
// instance about itself; with --service, the first that discovery lists.
func (t *target) instance() (peer.ID, error) {
	if t.service == "" {
		return t.id, nil
	}
	list := t.m.Instances(t.service)
	if len(list) == 0 {
		return peer.ID{}, usageErr{fmt.Errorf("no instance of service %q in discovery", t.service)}
	}
	return list[0].ID, nil
}

// connect resolves the target of a subcommand: args[0] unless --service
// is given, and the rest of args after it.
func connect(ctx context.Context, g *globals, args []string) (*target, []string, error) {
	if g.service == "" && len(args) == 0 {
		return nil, nil, usageErr{errors.New("missing TARGET: an address (tcp://host:port, uds:///path, http://host:port), an instance id with --discovery, or --service NAME")}
	}
	var d discovery.PeerDiscovery
	closeDisc := func() {}
	if g.discovery != "" {
		var err error
		if d, closeDisc, err = openDiscovery(ctx, g, g.discovery); err != nil {
			return nil, nil, err
		}
	}
	if g.service != "" && d == nil {
		return nil, nil, usageErr{errors.New("--service needs --discovery")}
	}
	tc, err := tlsConfig(g)
	if err != nil {
		closeDisc()
		return nil, nil, err
	}
	b := velo.NewBuilder().Logger(quietLogger(g)).
		AddTransport(tcp.New(tcp.Options{Listen: "127.0.0.1:0", TLS: tc})).
		AddTransport(uds.New(uds.Options{})).
		AddTransport(http.New(http.Options{Listen: "127.0.0.1:0", TLS: tc}))
	if d != nil {
		b = b.Discovery(lookOnly{d})
	}
	m, err := b.Build(ctx)
	if err != nil {
		closeDisc()
		return nil, nil, err
	}
	t := &target{m: m, close: func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(sctx)
		closeDisc()
	}}
	if g.service != "" {
		t.service = g.service
		return t, args, nil
	}
	raw, rest := args[0], args[1:]
	if err := t.resolve(ctx, raw, d); err != nil {
		t.close()
		return nil, nil, err
	}
	return t, rest, nil
}

// resolve finds the instance raw names: an address it dials, or an id it
// looks up in discovery.
func (t *target) resolve(ctx context.Context, raw string, d discovery.PeerDiscovery) error {
	if id, err := peer.Parse(raw); err == nil {
		if d == nil {
			return usageErr{fmt.Errorf("TARGET %s is an instance id: give --discovery to find it", raw)}
		}
		info, err := d.Lookup(ctx, id)
		if err != nil {
			return connErr{fmt.Errorf("looking up %s: %w", raw, err)}
		}
		t.id = id
		return t.m.RegisterPeer(info)
	}
	tname, addr, err := parseAddress(raw)
	if err != nil {
		return err
	}
	info, err := t.m.Dial(ctx, tname, addr)
	if err != nil {
		return err
	}
	t.id = info.ID
	return nil
}

// parseAddress reads tcp://host:port, uds:///path and http://host:port
// into a transport name and its address.
func parseAddress(raw string) (tname, addr string, err error) {
	u, perr := url.Parse(raw)
	switch {
	case perr != nil:
		err = perr
	case u.Scheme == "tcp" && u.Host != "":
		return tcp.Name, u.Host, nil
	case u.Scheme == "uds" || u.Scheme == "unix":
		if p := u.Host + u.Path; p != "" {
			return uds.Name, p, nil
		}
		err = errors.New("no socket path")
	case u.Scheme == "http" && u.Host != "":
		return http.Name, raw, nil
	default:
		err = errors.New("want tcp://host:port, uds:///path, http://host:port or an instance id")
	}
	return "", "", usageErr{fmt.Errorf("TARGET %q: %v", raw, err)}
}

// openDiscovery opens the backend that raw names: file:PATH (or
// file:///PATH), nats://host:port[/bucket].
func openDiscovery(ctx context.Context, g *globals, raw string) (discovery.PeerDiscovery, func(), error) {
	scheme, rest, _ := strings.Cut(raw, ":")
	if b := g.backends[scheme]; b != nil {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, nil, usageErr{fmt.Errorf("--discovery: %w", err)}
		}
		d, closeFn, err := b(ctx, u)
		if err != nil {
			return nil, nil, connErr{fmt.Errorf("--discovery %s: %w", raw, err)}
		}
		return d, closeFn, nil
	}
	switch scheme {
	case "file":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return nil, nil, usageErr{fmt.Errorf("--discovery %q: no path", raw)}
		}
		r, err := file.New(path, file.Options{})
		if err != nil {
			return nil, nil, connErr{fmt.Errorf("--discovery %s: %w", raw, err)}
		}
		return r, func() {}, nil
	case "nats":
		u, err := url.Parse(raw)
		if err != nil {
			return nil, nil, usageErr{fmt.Errorf("--discovery: %w", err)}
		}
		bucket := strings.Trim(u.Path, "/")
		u.Path = ""
		nc, err := nats.Connect(u.String(), nats.Name("velo command"), nats.Timeout(5*time.Second))
		if err != nil {
			return nil, nil, connErr{fmt.Errorf("--discovery %s: %w", raw, err)}
		}
		r, err := natskv.New(nc, natskv.Options{Bucket: bucket})
		if err != nil {
			nc.Close()
			return nil, nil, connErr{fmt.Errorf("--discovery %s: %w", raw, err)}
		}
		return r, nc.Close, nil
	case "etcd":
		return nil, nil, usageErr{fmt.Errorf("--discovery %s: etcd lives in its own module; use the velo command built there: go install github.com/velo-messenger/velo/discovery/etcd/cmd/velo@latest", raw)}
	}
	return nil, nil, usageErr{fmt.Errorf("--discovery %q: want file:PATH or nats://host:port[/bucket]", raw)}
}

// tlsConfig is the TLS the flags ask for, nil for none.
func tlsConfig(g *globals) (*tls.Config, error) {
	if g.tlsCA == "" && g.tlsCert == "" && g.tlsKey == "" && g.tlsName == "" {
		return nil, nil
	}
	c := &tls.Config{ServerName: g.tlsName}
	if g.tlsCA != "" {
		pem, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, usageErr{fmt.Errorf("--ca: %w", err)}
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageErr{fmt.Errorf("--ca %s: no PEM certificate in it", g.tlsCA)}
		}
	}
	if (g.tlsCert == "") != (g.tlsKey == "") {
		return nil, usageErr{errors.New("--cert and --key go together")}
	}
	if g.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, usageErr{fmt.Errorf("--cert/--key: %w", err)}
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// lookOnly is a discovery backend that the command reads without
// publishing itself: Register registers nothing, so that the command's
// own instance never shows up among the service's.
type lookOnly struct{ d discovery.PeerDiscovery }

func (l lookOnly) Lookup(ctx context.Context, id peer.ID) (peer.Info, error) {
	return l.d.Lookup(ctx, id)
}

func (l lookOnly) Register(context.Context, peer.Info) (discovery.Registration, error) {
	return noRegistration{}, nil
}

func (l lookOnly) Watch(ctx context.Context) (<-chan discovery.Change, error) {
	if w, ok := l.d.(discovery.Watcher); ok {
		return w.Watch(ctx)
	}
	return nil, errors.New("the backend cannot be watched")
}

func (l lookOnly) List(ctx context.Context) ([]peer.Info, error) {
	if ls, ok := l.d.(discovery.Lister); ok {
		return ls.List(ctx)
	}
	return nil, errors.New("the backend cannot list")
}

type noRegistration struct{}

func (noRegistration) Update(context.Context, peer.Info) error { return nil }
func (noRegistration) Close(context.Context) error             { return nil }

// quietLogger logs velo's warnings to stderr with --verbose, else nothing.
func quietLogger(g *globals) *slog.Logger {
	if g.verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
