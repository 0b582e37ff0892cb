package velo_test

import (
	"context"
	"fmt"

	"github.com/velo-messenger/velo"
)

type AddRequest struct{ A, B int }
type AddResponse struct{ Sum int }

// The README's quick start: two instances over TCP on loopback, one typed
// handler, one call.
func Example() {
	ctx := context.Background()
	server, _ := velo.NewBuilder().Build(ctx) // TCP on 127.0.0.1, port chosen by the system
	defer server.Shutdown(ctx)
	client, _ := velo.NewBuilder().Build(ctx)
	defer client.Shutdown(ctx)

	add := velo.TypedUnaryHandler("add", func(ctx context.Context, c *velo.TypedContext[AddRequest]) (AddResponse, error) {
		return AddResponse{Sum: c.Input.A + c.Input.B}, nil
	})
	server.RegisterHandler(add.Build())
	client.RegisterPeer(server.PeerInfo()) // or give both a discovery backend

	resp, err := velo.TypedUnary[AddResponse](client, "add").
		Payload(AddRequest{A: 2, B: 3}).
		Instance(server.InstanceID()).
		Send(ctx)
	fmt.Println(resp.Sum, err)
	// Output: 5 <nil>
}
