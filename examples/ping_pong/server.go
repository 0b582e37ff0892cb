package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
)

// serve runs in the child. It answers "ping" until its stdin closes (the
// parent is done, or died) or it receives SIGTERM or an interrupt.
func serve(cfg config) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	m, err := newMessenger(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, shutdown(m)) }()

	echo := velo.UnaryHandler("ping", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	})
	if cfg.inline {
		echo.Inline()
	}
	if err := m.RegisterHandler(echo.Build()); err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(m.PeerInfo()); err != nil {
		return err
	}
	go func() {
		io.Copy(io.Discard, os.Stdin) // returns when the parent closes our stdin
		stop()
	}()
	<-ctx.Done()
	return nil
}

// server is the child process that answers "ping".
type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser // closing it tells the child to shut down
	info  peer.Info
}

// startServer runs this program again as the server, and reads the
// peer.Info it prints once it listens.
func startServer(cfg config, env ...string) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to start the server: %w", err)
	}
	cmd := exec.Command(exe, "-transport", cfg.transport, "-inline="+strconv.FormatBool(cfg.inline), "-tls="+strconv.FormatBool(cfg.tls))
	cmd.Env = append(append(os.Environ(), serveEnv+"=1"), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	srv := &server{cmd: cmd, stdin: stdin}

	// Read on a goroutine so that a child that never prints cannot hang
	// us: killing it closes its stdout, which ends the read.
	line := make(chan []byte, 1)
	go func() {
		b, _ := bufio.NewReader(stdout).ReadBytes('\n')
		line <- b
	}()
	select {
	case b := <-line:
		if err = json.Unmarshal(b, &srv.info); err == nil {
			return srv, nil
		}
		err = fmt.Errorf("the server printed %q instead of its peer info", b)
		if len(b) == 0 {
			err = errors.New("the server exited before printing its peer info")
		}
	case <-time.After(startTimeout):
		err = fmt.Errorf("the server printed no peer info within %v", startTimeout)
	}
	cmd.Process.Kill()
	if werr := cmd.Wait(); werr != nil {
		err = fmt.Errorf("%w (server: %v)", err, werr)
	}
	return nil, err
}

// stop closes the child's stdin, which makes it shut down, and waits for
// it to exit. It kills the child if it takes longer than stopTimeout.
func (s *server) stop() error {
	s.stdin.Close()
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		return nil
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-exited
		return fmt.Errorf("the server did not exit within %v of being told to; killed it", stopTimeout)
	}
}
