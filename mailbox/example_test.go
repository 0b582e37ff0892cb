package mailbox_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/velo-messenger/velo/mailbox"
)

// A bounded queue of two values that refuses a third: a slot is taken
// before each push and released after each pop.
func Example() {
	ctx := context.Background()
	slots := mailbox.NewSlots(2, mailbox.Reject)
	var queue mailbox.Ring[string]

	for _, v := range []string{"first", "second", "third"} {
		if err := slots.Acquire(ctx); err != nil {
			if errors.Is(err, mailbox.ErrFull) {
				fmt.Println("refused", v+":", err, "- refusals so far:", slots.Refused())
			}
			continue
		}
		queue.Push(v)
	}

	slots.Close()
	for {
		v, ok := queue.Pop()
		if !ok {
			break
		}
		fmt.Println("popped", v)
		slots.Release()
	}
	fmt.Println("held:", slots.Len(), "- after Close:", slots.Acquire(ctx))
	// Output:
	// refused third: velo: mailbox full - refusals so far: 1
	// popped first
	// popped second
	// held: 0 - after Close: velo: mailbox closed
}
