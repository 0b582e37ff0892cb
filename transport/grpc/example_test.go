package grpc_test

import (
	"context"
	"fmt"

	"github.com/velo-messenger/velo"
	velogrpc "github.com/velo-messenger/velo/transport/grpc"
)

// Two instances talking over gRPC. For TLS, pass credentials in
// Options.ServerOptions and Options.DialOptions.
func Example() {
	ctx := context.Background()
	newInstance := func() *velo.Messenger {
		m, err := velo.NewBuilder().AddTransport(velogrpc.New(velogrpc.Options{})).Build(ctx)
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
