package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// The bench runs each server in a process of its own, so that the server's
// scheduler, garbage collector and allocations are not the client's: the
// bench binary starts itself again with the hidden flag -serve NAME.
//
// The protocol between the two is minimal: the child prints the server's
// Addr as one line on stdout, then serves until its stdin closes. A bench
// that dies, however it dies, closes the pipe, so no server outlives it.

// startTimeout bounds how long a child may take to print its address.
const startTimeout = 30 * time.Second

// runChild is the child's side: it serves kind until stdin closes.
func runChild(kind serverKind, e env, stdin io.Reader, stdout io.Writer) error {
	srv, err := kind.serve(context.Background(), e)
	if err != nil {
		return fmt.Errorf("%s: serve: %w", kind.name, err)
	}
	if _, err := fmt.Fprintln(stdout, srv.Addr()); err != nil {
		srv.Close()
		return err
	}
	io.Copy(io.Discard, stdin) // returns when the parent closes the pipe or dies
	return srv.Close()
}

// child is a server process started by the bench.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string // the server's Addr, as the child printed it
	done  chan struct{}
	err   error // cmd.Wait's result, set before done is closed
}

// startChild starts cmd, which must run runChild, and waits for the
// address it prints. The child's stderr goes to the bench's.
func startChild(name string, cmd *exec.Cmd, stderr io.Writer) (*child, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start server process: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}

	// Read the address on a goroutine of its own, so that a child that
	// hangs before printing it is killed after startTimeout instead of
	// hanging the bench. cmd.Wait must not run before stdout is read.
	line := make(chan string, 1)
	go func() {
		s, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			s = ""
		}
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, stdout)
		c.err = cmd.Wait()
		close(c.done)
	}()
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case c.addr = <-line:
	case <-t.C:
	}
	if c.addr == "" {
		c.stop()
		return nil, fmt.Errorf("%s: server process gave no address (exit: %v)", name, c.err)
	}
	return c, nil
}

// stop closes the child's stdin, which makes it shut its server down and
// exit, and waits for it; a child that takes longer than 10 s is killed.
func (c *child) stop() error {
	c.stdin.Close()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s: server process did not exit in time; killed", c.name)
	}
	if c.err != nil {
		return fmt.Errorf("%s: server process: %w", c.name, c.err)
	}
	return nil
}
