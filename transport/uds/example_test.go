package uds_test

import (
	"context"
	"fmt"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// Two instances on one host: UDS comes first, so they talk over the
// socket; an instance on another host would be reached over TCP.
func Example() {
	ctx := context.Background()
	newInstance := func() *velo.Messenger {
		m, err := velo.NewBuilder().
			AddTransport(uds.New(uds.Options{})).
			AddTransport(tcp.New(tcp.Options{})).
			Build(ctx)
		if err != nil {
			panic(err)
		}
		return m
	}
	server, client := newInstance(), newInstance()
	defer server.Shutdown(ctx)
	defer client.Shutdown(ctx)
	server.RegisterHandler(velo.UnaryHandler("ping", func(context.Context, *velo.Context) ([]byte, error) {
		return []byte("pong"), nil
	}).Build())
	client.RegisterPeer(server.PeerInfo())

	reply, err := client.Unary("ping").Instance(server.InstanceID()).Send(ctx)
	fmt.Println(string(reply), err)
	// Output: pong <nil>
}
