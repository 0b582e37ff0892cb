// Command velo is the velo command (github.com/velo-messenger/velo/cmd/velo)
// with one more discovery backend: etcd://host:port[/prefix], an etcd
// member spoken to over plain HTTP. It lives in the etcd module so that
// the core module does not depend on etcd.
//
//	go install github.com/velo-messenger/velo/discovery/etcd/cmd/velo@latest
//	velo instances --discovery etcd://127.0.0.1:2379
package main

import (
	"context"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/etcd"
	"github.com/velo-messenger/velo/internal/cli"
)

func main() { cli.Main(map[string]cli.Backend{"etcd": etcdBackend}) }

// etcdBackend connects to the etcd member at u; u's path, if any, is the
// key prefix (the default is etcd.Options' own).
func etcdBackend(_ context.Context, u *url.URL) (discovery.PeerDiscovery, func(), error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + u.Host},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, nil, err
	}
	var opts etcd.Options
	if p := strings.Trim(u.Path, "/"); p != "" {
		opts.Prefix = "/" + p + "/"
	}
	r, err := etcd.New(c, opts)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return r, func() { c.Close() }, nil
}
