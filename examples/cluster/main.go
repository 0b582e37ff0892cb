// Command cluster starts three velo instances of one service as separate
// processes that find each other through a discovery backend, with no
// RegisterPeer and no hand-written picker: each calls the service's
// "whoami" handler, velo choosing the instance, until every instance has
// answered, prints who did, then they all shut down and withdraw.
//
// Usage:
//
//	go run ./examples/cluster                                  # a registry file in a temporary directory
//	go run ./examples/cluster -discovery file:///tmp/peers.json
//	go run ./examples/cluster -discovery nats://127.0.0.1:4222 # a NATS server with JetStream
//	go run ./examples/cluster -n 5 -ttl 3s
//
// For etcd, run the same program from the etcd module, which links the
// etcd backend (the core module does not depend on etcd):
//
//	cd discovery/etcd && go run ./examples/cluster -discovery etcd://127.0.0.1:2379
package main

import (
	"context"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/natskv"
	"github.com/velo-messenger/velo/examples/cluster/demo"
)

func main() {
	demo.Main("cluster", map[string]demo.Backend{"nats": natsBackend})
}

// natsBackend connects to the NATS server at u (nats://host:port) and
// uses the default bucket, velo_peers.
func natsBackend(_ context.Context, u *url.URL, ttl time.Duration) (discovery.PeerDiscovery, func(), error) {
	nc, err := nats.Connect(u.String(), nats.MaxReconnects(-1), nats.Name("velo cluster example"))
	if err != nil {
		return nil, nil, err
	}
	r, err := natskv.New(nc, natskv.Options{TTL: ttl})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return r, nc.Close, nil
}
