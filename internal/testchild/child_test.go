package testchild_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/peer"
)

func TestMain(m *testing.M) {
	testchild.Main(map[string]func() int{
		"echo-args": echoArgs,
		"exit":      exitAfterStop,
	})
	goleak.VerifyTestMain(m)
}

// echoArgs prints a stray stdout line, then its info, whose address map
// holds its arguments and one variable of its environment, logs to stderr
// and waits to be stopped.
func echoArgs() int {
	fmt.Println("a line before the info")
	info := peer.Info{ID: peer.NewID(), Addresses: map[string]string{
		"args": strings.Join(testchild.Args(), " "),
		"env":  os.Getenv("TESTCHILD_VAR"),
	}}
	if err := testchild.PrintInfo(info); err != nil {
		return 2
	}
	fmt.Fprintln(os.Stderr, "level=WARN msg=ready")
	testchild.WaitStop()
	return 0
}

// exitAfterStop exits with the code its argument says once stopped.
func exitAfterStop() int {
	testchild.PrintInfo(peer.Info{ID: peer.NewID()})
	testchild.WaitStop()
	var code int
	fmt.Sscan(testchild.Args()[0], &code)
	return code
}

func TestStartArgsEnvOutput(t *testing.T) {
	c := testchild.Start(t, "echo-args", testchild.Options{
		Args: []string{"-x", "1", "two"},
		Env:  []string{"TESTCHILD_VAR=from the parent"},
		Log:  io.Discard,
	})
	if c.Info.ID.IsZero() {
		t.Errorf("Info.ID is zero")
	}
	if got := c.Info.Addresses["args"]; got != "-x 1 two" {
		t.Errorf("child's Args() = %q, want %q", got, "-x 1 two")
	}
	if got := c.Info.Addresses["env"]; got != "from the parent" {
		t.Errorf("child's TESTCHILD_VAR = %q", got)
	}
	select {
	case <-c.Watch("level=WARN"):
	case <-time.After(10 * time.Second):
		t.Fatalf("no WARN line in the child's output: %q", c.Output())
	}
	<-c.Watch("ready") // already there: closed at once
	if out := c.Output(); !strings.Contains(out, "a line before the info\n") || strings.Contains(out, "velo-testchild-info") {
		t.Errorf("output %q: want the stray stdout line, not the info line", out)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if code := c.ExitCode(); code != 0 {
		t.Errorf("exit code %d after Stop, want 0", code)
	}
}

func TestStopReportsExitStatus(t *testing.T) {
	c := testchild.Start(t, "exit", testchild.Options{Args: []string{"3"}})
	err := c.Stop()
	if err == nil || c.ExitCode() != 3 {
		t.Fatalf("Stop of a child exiting with 3: %v, exit code %d", err, c.ExitCode())
	}
	if err2 := c.Stop(); err2 != err {
		t.Errorf("a second Stop: %v, want the first one's %v", err2, err)
	}
}

func TestKill(t *testing.T) {
	c := testchild.Start(t, "exit", testchild.Options{Args: []string{"0"}})
	c.Kill()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
	if code := c.ExitCode(); code != -1 {
		t.Errorf("exit code %d after a kill, want -1 (a signal)", code)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("Stop after Kill: %v, want nil", err)
	}
}
