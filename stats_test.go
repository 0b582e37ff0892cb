package velo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/actor"
)

// TestStats drives every counter of Stats once and reads it back: calls
// that succeed, fail, panic, are refused busy, expire in the mailbox,
// wait in flight; a request for a handler that does not exist, one that
// Authorize refuses, a retry; and the connection's counters.
func TestStats(t *testing.T) {
	ctx := testCtx(t)
	release := make(chan struct{})
	b := build(t, velo.NewBuilder().
		Options(velo.Options{Authorize: func(_ context.Context, _, handler string) error {
			if handler == "denied" {
				return errors.New("no")
			}
			return nil
		}}).
		Handle(
			velo.UnaryHandler("ok", func(context.Context, *velo.Context) ([]byte, error) { return []byte("y"), nil }).Build(),
			velo.UnaryHandler("fail", func(context.Context, *velo.Context) ([]byte, error) { return nil, errors.New("boom") }).Build(),
			velo.UnaryHandler("panic", func(context.Context, *velo.Context) ([]byte, error) { panic("oops") }).
				Restart(actor.RestartPolicy{MaxRestarts: 10, Window: time.Minute}).Build(),
			velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil, nil
			}).Concurrency(1).Mailbox(2).RejectWhenFull().Build(),
		))
	a := newMessenger(t, velo.Options{})
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	id := b.InstanceID()
	call := func(h string, d time.Duration) error {
		cctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := a.Unary(h).Instance(id).Send(cctx)
		return err
	}
	for range 3 {
		if err := call("ok", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	call("fail", 5*time.Second)
	call("panic", 5*time.Second)
	call("nobody", 5*time.Second)
	call("denied", 5*time.Second)
	// Retried against a refusal: the budget allows it.
	a.Unary("nobody").Instance(id).Retry(velo.RetryPolicy{Attempts: 2}).Send(ctx)

	// block: one running, one queued whose deadline passes in the
	// queue (expired), one refused by the full mailbox.
	running := make(chan error, 1)
	go func() { running <- call("block", 10*time.Second) }()
	waitFor := func(what string, cond func(velo.Stats) bool) velo.Stats {
		t.Helper()
		var st velo.Stats
		if _, err := discoverytestEventually(func() error {
			st = b.Stats()
			if !cond(st) {
				return errors.New(what)
			}
			return nil
		}); err != nil {
			t.Fatalf("%v: %+v", err, st.Handlers["block"])
		}
		return st
	}
	waitFor("block running", func(s velo.Stats) bool { return s.Handlers["block"].InFlight == 1 })
	queued := make(chan error, 1)
	go func() { queued <- call("block", 200*time.Millisecond) }()
	st := waitFor("block queued", func(s velo.Stats) bool { return s.Handlers["block"].MailboxDepth == 2 })
	if h := st.Handlers["block"]; h.InFlight != 2 || h.MailboxCapacity != 2 {
		t.Errorf("block while one runs and one waits: in flight %d, mailbox %d of %d", h.InFlight, h.MailboxDepth, h.MailboxCapacity)
	}
	if err := call("block", 5*time.Second); !errors.Is(err, velo.ErrBusy) {
		t.Errorf("call to a full mailbox: %v, want ErrBusy", err)
	}
	if as := a.Stats(); len(as.Peers) != 1 || as.Peers[0].CallsPending != 2 || !as.Peers[0].Dialed {
		t.Errorf("caller's peer stats while two calls wait: %+v", as.Peers)
	}
	if err := <-queued; !errors.Is(err, velo.ErrDeadlineExceeded) {
		t.Errorf("queued call: %v, want its deadline", err)
	}
	// The callee's copy of the deadline ends a transit later than the
	// caller's: let it pass before the queued request's turn comes.
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-running; err != nil {
		t.Errorf("running call: %v", err)
	}
	st = waitFor("block drained", func(s velo.Stats) bool { return s.Handlers["block"].InFlight == 0 && s.Handlers["block"].Expired == 1 })

	check := func(name string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	ok, fail, pnc, blk := st.Handlers["ok"], st.Handlers["fail"], st.Handlers["panic"], st.Handlers["block"]
	check("ok.Requests", ok.Requests, 3)
	check("ok errors", uint64(len(ok.Errors)), 0)
	check("ok.Duration.Count", ok.Duration.Count, 3)
	if ok.Duration.Sum <= 0 || len(ok.Duration.Counts) != len(ok.Duration.Bounds)+1 {
		t.Errorf("ok.Duration: %+v", ok.Duration)
	}
	var inBuckets uint64
	for _, n := range ok.Duration.Counts {
		inBuckets += n
	}
	check("ok.Duration buckets", inBuckets, 3)
	check("fail.Errors[HandlerError]", fail.Errors[velo.CodeHandlerError], 1)
	check("panic.Panics", pnc.Panics, 1)
	check("panic.Errors[HandlerPanic]", pnc.Errors[velo.CodeHandlerPanic], 1)
	if pnc.Restarts != 1 {
		t.Errorf("panic.Restarts = %d, want 1", pnc.Restarts)
	}
	check("block.Requests", blk.Requests, 3)
	check("block.RefusedBusy", blk.RefusedBusy, 1)
	check("block.Expired", blk.Expired, 1)
	check("block.Errors[Busy]", blk.Errors[velo.CodeBusy], 1)
	check("block.Errors[DeadlineExceeded]", blk.Errors[velo.CodeDeadlineExceeded], 1)
	check("Totals.NotFound", st.Totals.NotFound, 3)
	check("Totals.Denied", st.Totals.Denied, 1)
	if as := a.Stats(); as.Totals.Retries != 1 {
		t.Errorf("caller's Totals.Retries = %d, want 1", as.Totals.Retries)
	}
	if st.Totals.Connections != 1 || len(st.Peers) != 1 {
		t.Fatalf("callee's connections: %d, peers %+v", st.Totals.Connections, st.Peers)
	}
	p := st.Peers[0]
	if p.ID != a.InstanceID() || p.Transport != "tcp" || p.Dialed || p.FramesIn < 10 || p.FramesOut < 10 ||
		p.BytesIn <= p.FramesIn || p.BytesOut <= p.FramesOut || time.Since(p.LastHeard) > 5*time.Second {
		t.Errorf("callee's peer stats: %+v", p)
	}
	if _, ok := st.Handlers["_ping"]; ok {
		t.Error("Stats lists a reserved handler")
	}
}

// TestRemoteStats: an instance built with ServeStats answers its Stats to
// another instance, subject to Authorize; one without does not.
func TestRemoteStats(t *testing.T) {
	ctx := testCtx(t)
	serving := build(t, velo.NewBuilder().Options(velo.Options{ServeStats: true}).
		Handle(velo.UnaryHandler("ok", func(context.Context, *velo.Context) ([]byte, error) { return nil, nil }).Build()))
	closed := build(t, velo.NewBuilder())
	guarded := build(t, velo.NewBuilder().Options(velo.Options{ServeStats: true, Authorize: func(_ context.Context, _, h string) error {
		if h == "_stats" {
			return errors.New("stats are private")
		}
		return nil
	}}))
	a := newMessenger(t, velo.Options{})
	for _, m := range []*velo.Messenger{serving, closed, guarded} {
		if err := a.RegisterPeer(m.PeerInfo()); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if _, err := a.Unary("ok").Instance(serving.InstanceID()).Send(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, err := a.RemoteStats(ctx, serving.InstanceID())
	if err != nil || st.Handlers["ok"].Requests != 4 || st.Totals.Connections != 1 {
		t.Errorf("RemoteStats = %+v, %v; want 4 requests to ok on one connection", st.Totals, err)
	}
	if _, err := a.RemoteStats(ctx, closed.InstanceID()); !errors.Is(err, velo.ErrHandlerNotFound) {
		t.Errorf("RemoteStats of an instance without ServeStats: %v, want ErrHandlerNotFound", err)
	}
	// Plain TCP authenticates nobody: the refusal is ErrUnauthenticated.
	if _, err := a.RemoteStats(ctx, guarded.InstanceID()); !errors.Is(err, velo.ErrUnauthenticated) {
		t.Errorf("RemoteStats refused by Authorize: %v, want ErrUnauthenticated", err)
	}
}
