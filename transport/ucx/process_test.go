//go:build ucx && cgo

package ucx_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/transport/ucx"
)

// peerRole is the testchild role of a UCX peer process (runPeer).
const peerRole = "ucx-peer"

// The keepalive of both sides in these tests: a dead peer that UCX does
// not report (shared memory) is found within keepaliveTimeout.
const (
	keepaliveInterval = 200 * time.Millisecond
	keepaliveTimeout  = time.Second
)

var modes = []struct{ name, tls string }{
	{"tcp", ucx.DefaultTransports},
	{"shared-memory", ucx.SharedMemory},
}

type addReq struct{ A, B int }
type addResp struct{ Sum int }

// runPeer is a messenger over UCX (-tls gives UCX's transports) with the
// handlers the tests call: "echo", "add" (typed), "note" (AMSend/AMSync:
// counts), "count", "block" (waits for its ctx), and "mkevent" (creates an
// event, triggered 200 ms later).
func runPeer() int {
	fs := flag.NewFlagSet(peerRole, flag.ContinueOnError)
	tls := fs.String("tls", ucx.DefaultTransports, "UCX transports")
	grace := fs.Duration("grace", 5*time.Second, "how long Shutdown waits for the handlers in flight")
	if err := fs.Parse(testchild.Args()); err != nil {
		return 2
	}
	tr, err := ucx.New(ucx.Options{Transports: *tls})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx := context.Background()
	m, err := velo.NewBuilder().AddTransport(tr).Options(velo.Options{
		KeepaliveInterval: keepaliveInterval,
		KeepaliveTimeout:  keepaliveTimeout,
	}).Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var notes atomic.Int64
	m.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	m.RegisterHandler(velo.TypedUnaryHandler("add", func(_ context.Context, c *velo.TypedContext[addReq]) (addResp, error) {
		return addResp{Sum: c.Input.A + c.Input.B}, nil
	}).Build())
	m.RegisterHandler(velo.AMHandler("note", func(context.Context, *velo.Context) error {
		notes.Add(1)
		return nil
	}).Build())
	m.RegisterHandler(velo.UnaryHandler("count", func(context.Context, *velo.Context) ([]byte, error) {
		return fmt.Appendf(nil, "%d", notes.Load()), nil
	}).Build())
	m.RegisterHandler(velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}).Build())
	m.RegisterHandler(velo.UnaryHandler("mkevent", func(context.Context, *velo.Context) ([]byte, error) {
		ev, err := m.Events().NewEvent()
		if err != nil {
			return nil, err
		}
		time.AfterFunc(200*time.Millisecond, func() { ev.Trigger() })
		return ev.Handle().MarshalBinary()
	}).Build())
	if err := testchild.PrintInfo(m.PeerInfo()); err != nil {
		return 2
	}
	testchild.WaitStop()
	sctx, cancel := context.WithTimeout(ctx, *grace)
	defer cancel()
	m.Shutdown(sctx)
	return 0
}

// newMessenger is a messenger over UCX in the test process, shut down when
// the test ends.
func newMessenger(t *testing.T, tls string) *velo.Messenger {
	t.Helper()
	tr, err := ucx.New(ucx.Options{Transports: tls})
	if err != nil {
		t.Fatal(err)
	}
	m, err := velo.NewBuilder().AddTransport(tr).Options(velo.Options{
		KeepaliveInterval: keepaliveInterval,
		KeepaliveTimeout:  keepaliveTimeout,
	}).Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Two messengers in separate processes do all four patterns and an event
// over UCX, in both modes; 64 KiB and 4 MiB payloads go by rendezvous.
func TestProcessesAllPatterns(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			ctx := testCtx(t)
			child := testchild.Start(t, peerRole, testchild.Options{Args: []string{"-tls", mode.tls}})
			m := newMessenger(t, mode.tls)
			if err := m.RegisterPeer(child.Info); err != nil {
				t.Fatal(err)
			}
			id := child.Info.ID
			for _, n := range []int{0, 32, 64 << 10, 4 << 20} {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(i * 7)
				}
				got, err := m.Unary("echo").RawPayload(p).Instance(id).Send(ctx)
				if err != nil || string(got) != string(p) {
					t.Fatalf("Unary echo of %d bytes = %d bytes, %v", n, len(got), err)
				}
			}
			r, err := velo.TypedUnary[addResp](m, "add").Payload(addReq{A: 40, B: 2}).Instance(id).Send(ctx)
			if err != nil || r.Sum != 42 {
				t.Fatalf("TypedUnary add = %+v, %v", r, err)
			}
			for range 100 {
				if err := m.AMSend("note").Instance(id).Send(ctx); err != nil {
					t.Fatalf("AMSend: %v", err)
				}
			}
			// AMSync returns once the handler ran, and frames on one
			// connection keep their order: all 101 notes are counted.
			if err := m.AMSync("note").Instance(id).Send(ctx); err != nil {
				t.Fatalf("AMSync: %v", err)
			}
			if got, err := m.Unary("count").Instance(id).Send(ctx); err != nil || string(got) != "101" {
				t.Fatalf("count = %q, %v; want 101", got, err)
			}
			hb, err := m.Unary("mkevent").Instance(id).Send(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var h events.Handle
			if err := h.UnmarshalBinary(hb); err != nil {
				t.Fatal(err)
			}
			aw, err := m.Events().Awaiter(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := aw.Wait(ctx); err != nil {
				t.Fatalf("awaiting the child's event: %v", err)
			}
		})
	}
}

// A peer killed with SIGKILL fails the calls in flight to it within the
// keepalive bound, in both modes (UCX reports the lost connection); a
// stopped peer (SIGSTOP), which nothing in UCX reports, within the
// keepalive bound too; a peer that shuts down fails them at once.
func TestProcessesPeerDeath(t *testing.T) {
	for _, mode := range modes {
		for _, how := range []string{"killed", "stopped", "shut-down"} {
			t.Run(mode.name+"/"+how, func(t *testing.T) {
				ctx := testCtx(t)
				const grace = 200 * time.Millisecond
				child := testchild.Start(t, peerRole, testchild.Options{Args: []string{"-tls", mode.tls, "-grace", grace.String()}})
				m := newMessenger(t, mode.tls)
				if err := m.RegisterPeer(child.Info); err != nil {
					t.Fatal(err)
				}
				if _, err := m.Unary("echo").Instance(child.Info.ID).Send(ctx); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() {
					_, err := m.Unary("block").Instance(child.Info.ID).Send(ctx)
					done <- err
				}()
				time.Sleep(100 * time.Millisecond) // the call is at the child
				at := time.Now()
				bound := keepaliveTimeout + time.Second
				switch how {
				case "killed":
					child.Kill()
				case "stopped":
					// SIGSTOP: the process holds its sockets and shared
					// memory and answers nothing; only keepalive can tell.
					if err := child.Signal(syscall.SIGSTOP); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { child.Signal(syscall.SIGCONT) })
				default:
					// Shutdown waits for the handlers in flight, up to
					// its grace: "block" never ends, so the messenger
					// gives up on it and says goodbye.
					go child.Stop()
					bound = grace + 500*time.Millisecond
				}
				select {
				case err := <-done:
					d := time.Since(at)
					if !errors.Is(err, velo.ErrPeerLost) && !errors.Is(err, velo.ErrShuttingDown) {
						t.Errorf("the call in flight ended with %v, want ErrPeerLost or ErrShuttingDown", err)
					}
					if d > bound {
						t.Errorf("the call failed %v after the peer went, want within %v", d, bound)
					}
					t.Logf("%s, %s: the call in flight failed after %v: %v", mode.name, how, d.Round(time.Millisecond), err)
				case <-time.After(15 * time.Second):
					t.Fatal("the call in flight still pending 15 s after the peer went")
				}
			})
		}
	}
}
