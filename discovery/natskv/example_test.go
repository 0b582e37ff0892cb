package natskv_test

import (
	"context"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery/natskv"
)

// An instance that registers in the "velo_peers" bucket of a NATS server
// and finds the others there. The connection reconnects for ever, so that
// the registration survives a server restart.
func Example() {
	ctx := context.Background()
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	reg, err := natskv.New(nc, natskv.Options{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := velo.NewBuilder().Discovery(reg).Build(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Shutdown(ctx)
	// m.Unary("whoami").Instance(id).Send(ctx) now finds id in the bucket.
}
