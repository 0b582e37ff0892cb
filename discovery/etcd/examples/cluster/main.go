// Command cluster is examples/cluster with the etcd backend linked in:
// three velo instances, separate processes, find each other through etcd
// (or the file registry), call each other's "whoami" handler, print who
// answered, and shut down. It lives in the etcd module so that the core
// module does not depend on etcd.
//
// Usage, from discovery/etcd:
//
//	go run ./examples/cluster -discovery etcd://127.0.0.1:2379
//	go run ./examples/cluster -discovery etcd://127.0.0.1:2379 -n 5 -ttl 5s
//	go run ./examples/cluster                       # the file registry, in a temporary directory
package main

import (
	"context"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/etcd"
	"github.com/velo-messenger/velo/examples/cluster/demo"
)

func main() {
	demo.Main("cluster", map[string]demo.Backend{"etcd": etcdBackend})
}

// etcdBackend connects to the etcd member at u (etcd://host:port, plain
// HTTP) and uses the default prefix, /velo/peers/.
func etcdBackend(_ context.Context, u *url.URL, ttl time.Duration) (discovery.PeerDiscovery, func(), error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + u.Host},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, nil, err
	}
	r, err := etcd.New(c, etcd.Options{TTL: ttl})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return r, func() { c.Close() }, nil
}
