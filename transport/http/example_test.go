package http_test

import (
	"context"
	"fmt"

	"github.com/velo-messenger/velo"
	velohttp "github.com/velo-messenger/velo/transport/http"
)

// Two instances talking over HTTP. Behind a reverse proxy, the server
// would set Options.Advertise to the proxy's URL.
func Example() {
	ctx := context.Background()
	newInstance := func() *velo.Messenger {
		m, err := velo.NewBuilder().
			AddTransport(velohttp.New(velohttp.Options{Protocol: velohttp.H2C})).
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
