// Package testchild runs the current test binary again as a child process
// with a role, so that a test can kill a real process, limit its
// descriptors, or keep its heap apart from the test's.
//
// The test binary dispatches roles first thing in TestMain:
//
//	func TestMain(m *testing.M) {
//		testchild.Main(map[string]func() int{"peer": runPeer})
//		goleak.VerifyTestMain(m)
//	}
//
// A role builds its messenger, announces it with PrintInfo, serves until
// WaitStop returns and returns the exit code. The test starts it with
// Start, which returns once the child's peer.Info is read, and stops it
// when the test ends: the child's stdin closes, it gets StopTimeout to
// exit, then it is killed. A child exits when its parent dies too, since
// its stdin closes then.
//
// For programs built from a main package (the examples), Build and Run
// build the binary and run it to completion.
package testchild

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/velo-messenger/velo/peer"
)

// roleEnv names the role of a child process; it is unset in the child
// before the role runs, so that children the role starts are not taken
// for children of the test.
const roleEnv = "VELO_TESTCHILD_ROLE"

// infoPrefix starts the stdout line that carries a child's peer.Info as
// JSON; any other line the child writes on stdout is kept as output.
const infoPrefix = "velo-testchild-info: "

// argsMark separates the test binary's own flags from a child's arguments.
const argsMark = "--"

// Main runs the role this process was started with, if it is a child, and
// exits with the role's code; a role that roles does not name exits with
// code 2. In the test process itself Main returns at once. Call it first in
// TestMain.
func Main(roles map[string]func() int) {
	role, ok := os.LookupEnv(roleEnv)
	if !ok {
		return
	}
	os.Unsetenv(roleEnv)
	run := roles[role]
	if run == nil {
		fmt.Fprintf(os.Stderr, "testchild: this test binary has no role %q\n", role)
		os.Exit(2)
	}
	os.Exit(run())
}

// Args returns, in a child, the arguments that its parent passed in
// Options.Args.
func Args() []string {
	if i := slices.Index(os.Args, argsMark); i >= 0 {
		return os.Args[i+1:]
	}
	return nil
}

// PrintInfo announces the child's messenger to its parent, on one line of
// stdout: Start returns once it has read it, with info in Child.Info.
func PrintInfo(info peer.Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(os.Stdout, "%s%s\n", infoPrefix, b)
	return err
}

// WaitStop blocks, in a child, until the parent stops it: it closes the
// child's stdin (Child.Stop, the end of the test) or dies.
func WaitStop() {
	io.Copy(io.Discard, os.Stdin)
}

// parseInfoLine reports whether line is the info line, and decodes it.
func parseInfoLine(line []byte, info *peer.Info) (bool, error) {
	rest, ok := bytes.CutPrefix(line, []byte(infoPrefix))
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(bytes.TrimSpace(rest), info)
}

// tail returns the last n lines of s, for error messages.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
