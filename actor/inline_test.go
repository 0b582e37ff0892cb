package actor_test

import (
	"context"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/velo-messenger/velo/actor"
)

func TestInlineRunsOnCallingGoroutine(t *testing.T) {
	var stack string
	a := mustNew(t, actor.Config[int, int]{
		Mode: actor.Inline,
		Factory: stateless(func(context.Context, int) {
			stack = string(debug.Stack())
		}),
	})
	if err := a.Tell(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	// On the calling goroutine, the handler's stack runs through this test
	// function; on any other goroutine it would not.
	if !strings.Contains(stack, "TestInlineRunsOnCallingGoroutine") {
		t.Fatalf("Inline handler did not run on the caller's goroutine; its stack:\n%s", stack)
	}
}
