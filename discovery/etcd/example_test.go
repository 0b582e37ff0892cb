package etcd_test

import (
	"context"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery/etcd"
)

// An instance that registers under /velo/peers/ in etcd and finds the
// others there.
func Example() {
	ctx := context.Background()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reg, err := etcd.New(c, etcd.Options{TTL: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	m, err := velo.NewBuilder().Discovery(reg).Build(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Shutdown(ctx)
	// m.Unary("whoami").Instance(id).Send(ctx) now finds id in etcd.
}
