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

// Large payloads sent one after another, their memory reused on both
// sides: the handler promises not to keep its payload (ReusePayload), and
// the caller hands each response back once it is done with it
// (ReleasePayload), so that the next one is received into memory already
// faulted in rather than into fresh pages.
func ExampleHandlerBuilder_ReusePayload() {
	ctx := context.Background()
	server, _ := velo.NewBuilder().Build(ctx)
	defer server.Shutdown(ctx)
	client, _ := velo.NewBuilder().Build(ctx)
	defer client.Shutdown(ctx)

	echo := velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil // returning it is fine; keeping it is not
	}).ReusePayload()
	server.RegisterHandler(echo.Build())
	client.RegisterPeer(server.PeerInfo())

	payload := make([]byte, 8<<20)
	for range 3 {
		resp, err := client.Unary("echo").RawPayload(payload).Instance(server.InstanceID()).Send(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		// ... use resp, then hand it back; it must not be used afterwards.
		client.ReleasePayload(resp)
	}
	fmt.Println(client.Stats().Totals.PayloadsReused)
	// Output: 2
}
