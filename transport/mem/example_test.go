package mem_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport/mem"
)

// Two messengers on one network: a call from a to b times out while they
// are partitioned, and succeeds again once the network heals.
func ExampleNetwork_Partition() {
	ctx := context.Background()
	n := mem.NewNetwork()
	a, err := velo.NewBuilder().AddTransport(mem.New(n, mem.Options{Addr: "a"})).Build(ctx)
	if err != nil {
		panic(err)
	}
	defer a.Shutdown(ctx)
	b, err := velo.NewBuilder().AddTransport(mem.New(n, mem.Options{Addr: "b"})).Build(ctx)
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(ctx)
	b.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	a.RegisterPeer(b.PeerInfo())

	call := func(what string, timeout time.Duration) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, err := a.Unary("echo").RawPayload([]byte(what)).Instance(b.InstanceID()).Send(cctx)
		switch {
		case err == nil:
			fmt.Println("answered:", string(out))
		case errors.Is(err, velo.ErrDeadlineExceeded):
			fmt.Println("timed out:", what)
		default:
			fmt.Println("failed:", err)
		}
	}
	call("before", 5*time.Second)
	n.Partition("a", "b") // every frame between a and b is lost
	call("during", 100*time.Millisecond)
	n.Heal()
	call("after", 5*time.Second)
	// Output:
	// answered: before
	// timed out: during
	// answered: after
}
