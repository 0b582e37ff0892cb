package main

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/testchild"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestProgram builds the program and runs it end to end: three instance
// processes that find each other through discovery.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := testchild.Build(t)

	t.Run("file", func(t *testing.T) {
		stdout, stderr, err := testchild.Run(t, bin)
		if err != nil {
			t.Fatalf("cluster: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		checkOutput(t, stdout, 3)
	})

	t.Run("file given, five instances", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "peers.json")
		stdout, stderr, err := testchild.Run(t, bin, "-discovery", "file://"+path, "-n", "5", "-ttl", "2s")
		if err != nil {
			t.Fatalf("cluster: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		checkOutput(t, stdout, 5)
	})

	t.Run("nats", func(t *testing.T) {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		defer func() { s.Shutdown(); s.WaitForShutdown() }()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		url := fmt.Sprintf("nats://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)
		stdout, stderr, err := testchild.Run(t, bin, "-discovery", url)
		if err != nil {
			t.Fatalf("cluster: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		checkOutput(t, stdout, 3)
	})

	t.Run("unknown scheme", func(t *testing.T) {
		_, stderr, err := testchild.Run(t, bin, "-discovery", "carrier-pigeon://coop:1")
		if err == nil {
			t.Fatal("cluster succeeded with an unknown backend")
		}
		if !strings.Contains(stderr, `"carrier-pigeon"`) || !strings.Contains(stderr, "supported: file, nats") {
			t.Errorf("stderr does not name the scheme and the supported ones:\n%s", stderr)
		}
	})
}

// checkOutput checks that the calls of every instance to the service
// were answered by every instance, itself included, and that the run
// ended well.
func checkOutput(t *testing.T, stdout string, n int) {
	t.Helper()
	for i := range n {
		for j := range n {
			re := regexp.MustCompile(fmt.Sprintf(`(?m)^\[%d\] call \d+ answered by instance %d \(`, i, j))
			if !re.MatchString(stdout) {
				t.Errorf("no answer of instance %d to instance %d in:\n%s", j, i, stdout)
			}
		}
	}
	if want := fmt.Sprintf("all %d instances reached each other", n); !strings.Contains(stdout, want) {
		t.Errorf("no %q in:\n%s", want, stdout)
	}
}
