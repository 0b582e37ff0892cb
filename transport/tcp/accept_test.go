package tcp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/transport/tcp"
)

// childRole is the testchild role of the child (runChild).
const childRole = "emfile-server"

// childNOFILE is the child's limit on open descriptors: far fewer than the
// connections TestAcceptSurvivesEMFILE opens to it.
const childNOFILE = 64

// runChild lowers its descriptor limit to childNOFILE, starts a messenger
// over TCP on loopback with an "echo" handler, logging at Info to stderr,
// prints its peer.Info, and serves until the test stops it.
func runChild() int {
	if err := setNOFILE(childNOFILE); err != nil {
		fmt.Fprintln(os.Stderr, "child: lowering RLIMIT_NOFILE:", err)
		return 2
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := velo.NewBuilder().Logger(log).AddTransport(tcp.New(tcp.Options{})).Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	m.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	if err := testchild.PrintInfo(m.PeerInfo()); err != nil {
		return 2
	}
	testchild.WaitStop()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.Shutdown(sctx)
	return 0
}

// TestAcceptSurvivesEMFILE: a process out of descriptors keeps its
// listener. The child may have childNOFILE descriptors open; the test opens
// 100 idle connections to it, so that accept fails with EMFILE once the
// child holds what it may, then closes them all. A call from a new
// messenger must then succeed: the accept loop backed off and retried
// instead of returning, and the child logged the failures at Warn. The
// time from closing the idle connections to the first answer ("time to
// resume accepting") is logged, and bounded.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	if !canSetNOFILE {
		t.Skip("no RLIMIT_NOFILE on this system")
	}
	// The child's log is kept (Output), not shown: it logs every failed
	// accept.
	child := testchild.Start(t, childRole, testchild.Options{Log: io.Discard})
	info := child.Info
	addr := info.Addresses[tcp.Name]

	const idle = 100
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	for range idle {
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, nc)
	}
	// The child accepts until it runs out of descriptors. Hold the
	// connections until it says so (or long enough that it would have),
	// then for long enough that its accept loop, retrying, fails several
	// times more and pauses longer each time.
	select {
	case <-child.Watch("level=WARN"):
	case <-time.After(3 * time.Second):
	}
	time.Sleep(500 * time.Millisecond)
	for _, nc := range conns {
		nc.Close()
	}
	conns = nil
	freed := time.Now()

	m, err := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{})).Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	}()
	if err := m.RegisterPeer(info); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := m.Unary("echo").RawPayload([]byte("hi")).Instance(info.ID).Send(ctx)
	resumed := time.Since(freed)
	if err != nil || string(got) != "hi" {
		t.Fatalf("echo %v after the %d idle connections closed = %q, %v; child's stderr:\n%s", resumed.Round(time.Millisecond), idle, got, err, child.Output())
	}
	t.Logf("time to resume accepting (idle connections closed to first echo answered): %v", resumed.Round(time.Millisecond))
	// The loop pauses 1 s at most between accepts; the rest is a margin
	// for the dial, the handshake and a loaded machine.
	if bound := 2 * time.Second; resumed > bound {
		t.Errorf("time to resume accepting %v, want at most %v", resumed.Round(time.Millisecond), bound)
	}

	var warned bool
	for _, line := range strings.Split(child.Output(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=INFO") {
			t.Logf("child: %s", line)
		}
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "too many open files") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("the child logged no Warn line about accept failing with EMFILE; stderr:\n%s", child.Output())
	}
}
