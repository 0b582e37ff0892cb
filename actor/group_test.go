package actor

import (
	"context"
	"testing"
	"time"
)

func TestGroup(t *testing.T) {
	var g group
	if err := g.wait(context.Background()); err != nil {
		t.Fatalf("wait on empty group = %v", err)
	}
	g.add()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.wait(ctx); err != context.Canceled {
		t.Fatalf("wait with work left and canceled ctx = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.wait(context.Background()) }()
	g.done()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return once the group emptied")
	}
}
