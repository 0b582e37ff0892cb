package testchild

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RunTimeout bounds a Run, so that a hung program fails its test instead
// of stalling the whole run.
const RunTimeout = time.Minute

// Build compiles the main package in the test's working directory (the
// package under test) with the given build tags, into a temporary
// directory, and returns the binary's path. It skips the test when there
// is no go command in PATH, and fails it when the build fails.
func Build(t testing.TB, tags ...string) string {
	t.Helper()
	return BuildPackage(t, ".", tags...)
}

// BuildPackage is Build for the main package pkg (a path relative to the
// test's working directory, "../../examples/cluster", or an import path).
func BuildPackage(t testing.TB, pkg string, tags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if pkg == "." {
		bin = filepath.Join(filepath.Dir(bin), "program")
	}
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if out, err := exec.Command(goTool, append(args, pkg)...).CombinedOutput(); err != nil {
		t.Fatalf("go %s %s: %v\n%s", strings.Join(args, " "), pkg, err, out)
	}
	return bin
}

// Run runs bin with args to completion, RunTimeout at most (it is killed
// then), and returns what it wrote on stdout and stderr, and how it ended.
func Run(t testing.TB, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// A process the program started inherits its stdout and stderr; should
	// one outlive the program, stop waiting for the pipes after a while.
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	return out.String(), errOut.String(), err
}
