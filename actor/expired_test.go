package actor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/velo-messenger/velo/actor"
	"github.com/velo-messenger/velo/mailbox"
)

// expiry is what Config.Expired received.
type expiry struct {
	msg int
	err error
}

// TestQueuedMessageWhoseCtxEndsIsNotRun: a message that waits in a queue
// behind a blocked one (capped Spawn, an Ordered lane) and whose ctx ends
// meanwhile is handed to Expired with ctx.Err(), never to the handler.
func TestQueuedMessageWhoseCtxEndsIsNotRun(t *testing.T) {
	for _, m := range []struct {
		name string
		mode actor.Mode
		conc int
	}{{"spawn-capped", actor.Spawn, 1}, {"ordered", actor.Ordered, 0}} {
		for _, end := range []struct {
			name string
			want error
		}{{"deadline", context.DeadlineExceeded}, {"cancel", context.Canceled}} {
			t.Run(m.name+"/"+end.name, func(t *testing.T) {
				started := make(chan int, 4)
				release := make(chan struct{})
				expired := make(chan expiry, 4)
				after := make(chan int, 4)
				a := mustNew(t, actor.Config[int, int]{
					Mode: m.mode, MaxConcurrency: m.conc,
					Factory: blocking(started, release),
					Expired: func(msg int, err error) { expired <- expiry{msg, err} },
					After:   func(msg int) { after <- msg },
					OnPanic: func(msg int, err *actor.PanicError) { t.Errorf("OnPanic(%d, %v)", msg, err) },
				})
				if err := a.Tell(context.Background(), 0, 1); err != nil {
					t.Fatal(err)
				}
				recv(t, started, "the first message to start")

				var ctx context.Context
				var cancel context.CancelFunc
				if end.want == context.DeadlineExceeded {
					ctx, cancel = context.WithTimeout(context.Background(), brief)
				} else {
					ctx, cancel = context.WithCancel(context.Background())
				}
				defer cancel()
				// One key, one worker: message 2 waits behind message 1.
				if err := a.Tell(ctx, 0, 2); err != nil {
					t.Fatal(err)
				}
				if end.want == context.Canceled {
					cancel()
				}
				<-ctx.Done()
				quiet(t, expired, "Expired before the message's turn")
				close(release)

				e := recv(t, expired, "Expired")
				if e.msg != 2 || !errors.Is(e.err, end.want) {
					t.Fatalf("Expired(%d, %v), want message 2 with %v", e.msg, e.err, end.want)
				}
				if got := recv(t, after, "After for the first message"); got != 1 {
					t.Fatalf("After(%d), want 1", got)
				}
				// The next message runs as usual.
				if err := a.Tell(context.Background(), 0, 3); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, started, "the next message to start"); got != 3 {
					t.Fatalf("handler got message %d after the expired one, want 3", got)
				}
				stop(t, a)
				select {
				case got := <-started:
					t.Fatalf("the handler ran message %d", got)
				default:
				}
				if got := recv(t, after, "After for the next message"); got != 3 {
					t.Fatalf("After(%d), want 3 (none for the expired message)", got)
				}
				if n := a.Expired(); n != 1 {
					t.Fatalf("Expired() = %d, want 1", n)
				}
			})
		}
	}
}

// queuedModes are the modes whose messages may wait for their turn: all
// but Inline, which runs each message at its Tell and checks no ctx.
var queuedModes = []struct {
	name string
	mode actor.Mode
	conc int
}{
	{"spawn", actor.Spawn, 0},
	{"spawn-capped", actor.Spawn, 2},
	{"ordered", actor.Ordered, 0},
}

// TestMessageToldWithEndedCtxIsNotRun: in every queued mode, a message
// told with a ctx already done is accepted (Tell returns nil, as the actor
// had room) and expired, not run.
func TestMessageToldWithEndedCtxIsNotRun(t *testing.T) {
	for _, m := range queuedModes {
		t.Run(m.name, func(t *testing.T) {
			ran := make(chan int, 1)
			expired := make(chan expiry, 1)
			a := mustNew(t, actor.Config[int, int]{
				Mode: m.mode, MaxConcurrency: m.conc,
				Factory: stateless(func(_ context.Context, msg int) { ran <- msg }),
				Expired: func(msg int, err error) { expired <- expiry{msg, err} },
			})
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := a.Tell(ctx, 0, 7); err != nil {
				t.Fatalf("Tell with an ended ctx into room = %v, want nil", err)
			}
			e := recv(t, expired, "Expired")
			if e.msg != 7 || !errors.Is(e.err, context.Canceled) {
				t.Fatalf("Expired(%d, %v), want message 7 with context.Canceled", e.msg, e.err)
			}
			stop(t, a)
			if len(ran) != 0 {
				t.Fatalf("the handler ran message %d", <-ran)
			}
			if n := a.Expired(); n != 1 {
				t.Fatalf("Expired() = %d, want 1", n)
			}
		})
	}
}

// TestExpiredWithoutCallbackFreesRoom: with Expired nil, an expired
// message is counted and its room freed.
func TestExpiredWithoutCallbackFreesRoom(t *testing.T) {
	for _, m := range queuedModes {
		t.Run(m.name, func(t *testing.T) {
			ran := make(chan int, 2)
			a := mustNew(t, actor.Config[int, int]{
				Mode: m.mode, MaxConcurrency: m.conc, Mailbox: 1, Overflow: mailbox.Reject,
				Factory: stateless(func(_ context.Context, msg int) { ran <- msg }),
			})
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := a.Tell(ctx, 0, 1); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(long)
			for a.Expired() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the message told with an ended ctx was never counted as expired")
				}
				time.Sleep(time.Millisecond)
			}
			// Counted once its room is free: a mailbox of one takes the next.
			if err := a.Tell(context.Background(), 0, 2); err != nil {
				t.Fatalf("Tell after an expired message = %v, want room", err)
			}
			if got := recv(t, ran, "the next message"); got != 2 {
				t.Fatalf("handler ran %d, want 2", got)
			}
		})
	}
}
