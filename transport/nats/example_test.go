package nats_test

import (
	"context"
	"fmt"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo"
	velonats "github.com/velo-messenger/velo/transport/nats"
)

// An instance on a NATS system. Every instance that should reach it
// connects to the same system; its address is a subject.
func Example() {
	ctx := context.Background()
	m, err := velo.NewBuilder().
		AddTransport(velonats.New(velonats.Options{
			URL: "nats://nats.internal:4222",
			NATSOptions: []natsgo.Option{
				natsgo.UserCredentials("velo.creds"),
				natsgo.ReconnectWait(time.Second),
			},
		})).
		Build(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Shutdown(ctx)
	fmt.Println(m.PeerInfo().Addresses[velonats.Name]) // velo.in.<random>
}
