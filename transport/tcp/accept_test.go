package tcp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// childEnv makes the test binary run as a peer process (runChild) instead
// of running tests.
const childEnv = "VELO_TCP_TEST_CHILD"

// childNOFILE is the child's limit on open descriptors: far fewer than the
// connections TestAcceptSurvivesEMFILE opens to it.
const childNOFILE = 64

// runChild lowers its descriptor limit to childNOFILE, starts a messenger
// over TCP on loopback with an "echo" handler, logging at Info to stderr,
// prints its peer.Info as one JSON line on stdout, and serves until its
// stdin closes (so that it never outlives the test that started it).
func runChild() {
	if err := setNOFILE(childNOFILE); err != nil {
		fmt.Fprintln(os.Stderr, "child: lowering RLIMIT_NOFILE:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := velo.NewBuilder().Logger(log).AddTransport(tcp.New(tcp.Options{})).Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	m.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	b, _ := json.Marshal(m.PeerInfo())
	fmt.Println(string(b))
	bufio.NewReader(os.Stdin).ReadString('\n')
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.Shutdown(sctx)
	os.Exit(0)
}

// stderrWatch keeps what a child writes to stderr and closes warned at its
// first line logged at Warn.
type stderrWatch struct {
	mu     sync.Mutex
	buf    bytes.Buffer // guarded by mu
	warned chan struct{}
	once   sync.Once
}

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte("level=WARN")) {
		w.once.Do(func() { close(w.warned) })
	}
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startChild runs the test binary as a peer process (runChild) and
// returns its peer.Info and its stderr. The process ends with the test.
func startChild(t *testing.T) (peer.Info, *stderrWatch) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stderr := &stderrWatch{warned: make(chan struct{})}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child gave no peer info: %v; stderr:\n%s", err, stderr)
	}
	var info peer.Info
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &info); err != nil {
		t.Fatalf("child peer info %q: %v", line, err)
	}
	return info, stderr
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
	info, stderr := startChild(t)
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
	case <-stderr.warned:
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
		t.Fatalf("echo %v after the %d idle connections closed = %q, %v; child's stderr:\n%s", resumed.Round(time.Millisecond), idle, got, err, stderr)
	}
	t.Logf("time to resume accepting (idle connections closed to first echo answered): %v", resumed.Round(time.Millisecond))
	// The loop pauses 1 s at most between accepts; the rest is a margin
	// for the dial, the handshake and a loaded machine.
	if bound := 2 * time.Second; resumed > bound {
		t.Errorf("time to resume accepting %v, want at most %v", resumed.Round(time.Millisecond), bound)
	}

	var warned bool
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=INFO") {
			t.Logf("child: %s", line)
		}
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "too many open files") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("the child logged no Warn line about accept failing with EMFILE; stderr:\n%s", stderr)
	}
}
