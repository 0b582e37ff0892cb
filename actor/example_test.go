package actor_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/velo-messenger/velo/actor"
)

// An Ordered actor keeps per-key order; a panic fails one message and the
// handler is rebuilt from its factory.
func Example() {
	a, err := actor.New(actor.Config[string, string]{
		Name:    "greeter",
		Mode:    actor.Ordered,
		Restart: actor.DefaultRestartPolicy(),
		Factory: func() func(context.Context, string) {
			greeted := 0 // state, reset by a restart
			return func(_ context.Context, name string) {
				if name == "" {
					panic("nobody to greet")
				}
				greeted++
				fmt.Printf("hello %s (#%d)\n", name, greeted)
			}
		},
		OnPanic: func(_ string, err *actor.PanicError) {
			fmt.Println("failed:", err)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, name := range []string{"ada", "grace", "", "edsger"} {
		_ = a.Tell(ctx, "one key", name)
	}
	_ = a.Stop(ctx)

	err = a.Tell(ctx, "one key", "late")
	fmt.Println(errors.Is(err, actor.ErrStopped), a.Restarts())
	// Output:
	// hello ada (#1)
	// hello grace (#2)
	// failed: panic: nobody to greet
	// hello edsger (#1)
	// true 1
}
