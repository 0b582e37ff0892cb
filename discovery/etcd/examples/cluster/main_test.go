package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/discovery/etcd/internal/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestProgram builds the program and runs it against an embedded etcd.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "cluster")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	client := etcdtest.Start(t).ClientURL

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-discovery", "etcd://"+client.Host)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("cluster: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	stdout := out.String()
	for i := range 3 {
		for j := range 3 {
			re := regexp.MustCompile(fmt.Sprintf(`(?m)^\[%d\] call \d+ answered by instance %d \(`, i, j))
			if !re.MatchString(stdout) {
				t.Errorf("no answer of instance %d to instance %d in:\n%s", j, i, stdout)
			}
		}
	}
	if !strings.Contains(stdout, "all 3 instances reached each other") {
		t.Errorf("run did not end well:\n%s", stdout)
	}
}
