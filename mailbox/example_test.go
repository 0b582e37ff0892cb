package mailbox_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/velo-messenger/velo/mailbox"
)

func Example() {
	ctx := context.Background()
	m := mailbox.New[string](2, mailbox.Reject)

	_ = m.Push(ctx, "first")
	_ = m.Push(ctx, "second")
	if err := m.Push(ctx, "third"); errors.Is(err, mailbox.ErrFull) {
		fmt.Println("refused:", err, "- refusals so far:", m.Refused())
	}

	m.Close()
	for {
		v, err := m.Pop(ctx)
		if errors.Is(err, mailbox.ErrClosed) {
			fmt.Println("drained")
			break
		}
		fmt.Println("popped", v)
	}
	// Output:
	// refused: velo: mailbox full - refusals so far: 1
	// popped first
	// popped second
	// drained
}
