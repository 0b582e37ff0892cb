package velo_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
)

// childEnv makes the test binary run as a peer process (runChild) instead
// of running tests, so that fault tests can kill a real process.
const childEnv = "VELO_TEST_CHILD"

// runChild starts a messenger with a few handlers, prints its peer.Info as
// one JSON line on stdout, and serves until it gets SIGTERM or its stdin
// closes (so that it never outlives the test that started it).
//
// Handlers: "echo" (unary, returns its payload), "block" (unary, waits for
// its ctx to end: a call to it is in flight until the process dies).
func runChild() {
	ctx := context.Background()
	m, err := velo.NewBuilder().Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	m.RegisterHandler(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).Build())
	m.RegisterHandler(velo.UnaryHandler("block", func(ctx context.Context, _ *velo.Context) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}).Build())
	b, _ := json.Marshal(m.PeerInfo())
	fmt.Println(string(b))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(eof)
	}()
	select {
	case <-sig:
	case <-eof:
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.Shutdown(sctx)
	os.Exit(0)
}

// child is a peer process started by a test.
type child struct {
	cmd  *exec.Cmd
	info peer.Info
}

// startChild runs the test binary as a peer process and returns its
// peer.Info. The process is killed when the test ends.
func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
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
	c := &child{cmd: cmd}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child gave no peer info: %v", err)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &c.info); err != nil {
		t.Fatalf("child peer info %q: %v", line, err)
	}
	return c
}

// kill ends the child at once, as a crash would.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
}

func TestChildEcho(t *testing.T) {
	c := startChild(t)
	m := newMessenger(t, velo.Options{})
	if err := m.RegisterPeer(c.info); err != nil {
		t.Fatal(err)
	}
	got, err := m.Unary("echo").RawPayload([]byte("hi")).Instance(c.info.ID).Send(testCtx(t))
	if err != nil || string(got) != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}
