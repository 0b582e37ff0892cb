package testchild

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/peer"
)

// Options configure a child. The zero value means defaults.
type Options struct {
	// Args are passed to the child, which reads them with Args.
	Args []string
	// Env is added to the child's environment, as "KEY=value" entries.
	Env []string
	// Log receives what the child writes on stderr, and on stdout apart
	// from its info line, as it comes; Child.Output keeps it all too.
	// Nil: os.Stderr, so that a child's panic or data race shows in the
	// test's output. io.Discard keeps it quiet.
	Log io.Writer
	// StartTimeout bounds the wait for the child's info line. Zero: 30 s.
	StartTimeout time.Duration
	// StopTimeout is how long a child whose stdin closed gets to exit
	// before it is killed. Zero: 10 s.
	StopTimeout time.Duration
}

const (
	defaultStartTimeout = 30 * time.Second
	defaultStopTimeout  = 10 * time.Second
)

// Child is a child process started by Start.
type Child struct {
	// Info is what the child printed with PrintInfo.
	Info peer.Info

	role  string
	opts  Options
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *output
	lines *lineWriter

	done chan struct{} // closed once the process exited and its output is read
	err  error         // cmd.Wait's result; set before done is closed

	killed   atomic.Bool // Kill was called: the exit status is not checked
	checked  atomic.Bool // the test called Stop, and saw its error
	stopOnce sync.Once
	stopErr  error // set by the first Stop
}

// Start runs the test binary as a child with role (see Main) and waits for
// the info line it prints (PrintInfo). The child is stopped when the test
// ends (Stop); an exit other than a clean one, or one that needed a kill,
// fails the test, unless the test killed it (Kill). Start fails the test
// if the child gives no info line within Options.StartTimeout.
func Start(t testing.TB, role string, opts Options) *Child {
	t.Helper()
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = defaultStopTimeout
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	// -test.run=^$: should the binary not dispatch roles in its TestMain,
	// the child runs no test (and prints no info) instead of running the
	// tests again.
	args := append([]string{"-test.run=^$", argsMark}, opts.Args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), opts.Env...), roleEnv+"="+role, goraceEnv())
	// A process the child started may hold its stdout or stderr open
	// after the child exits; Wait gives up on them after this.
	cmd.WaitDelay = opts.StopTimeout

	c := &Child{role: role, opts: opts, cmd: cmd, done: make(chan struct{})}
	c.out = &output{log: opts.Log}
	c.lines = &lineWriter{out: c.out, info: make(chan error, 1), dst: &c.Info}
	cmd.Stdout, cmd.Stderr = c.lines, c.out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("testchild %s: %v", role, err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatalf("testchild %s: %v", role, err)
	}
	go func() {
		err := cmd.Wait() // returns once stdout and stderr are copied
		c.lines.flush()
		c.err = err
		close(c.done)
	}()
	t.Cleanup(func() {
		if err := c.stop(); err != nil && !c.checked.Load() {
			t.Errorf("%v; its output:\n%s", err, tail(c.Output(), 40))
		}
	})

	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	var failure string
	select {
	case err := <-c.lines.info:
		if err == nil {
			return c
		}
		failure = fmt.Sprintf("its info line: %v", err)
	case <-c.done:
		select {
		case err := <-c.lines.info:
			if err == nil {
				return c // printed its info, then exited at once
			}
			failure = fmt.Sprintf("its info line: %v", err)
		default:
			failure = fmt.Sprintf("it exited (%v) without printing its info", c.err)
		}
	case <-timer.C:
		failure = fmt.Sprintf("no info line within %v", opts.StartTimeout)
	}
	c.Kill()
	t.Fatalf("testchild %s: %s; its output:\n%s", role, failure, tail(c.Output(), 40))
	return nil
}

// goraceEnv is the child's GORACE: the parent's, plus no pause at exit.
// A program built with -race that exits with status 0 sleeps for
// atexit_sleep_ms (1 s) first, so that other threads may finish a report;
// a child that exits once WaitStop returned has shut its goroutines down
// already, and the pause would cost each test that stops one a second.
func goraceEnv() string {
	v := os.Getenv("GORACE")
	if strings.Contains(v, "atexit_sleep_ms") {
		return "GORACE=" + v
	}
	return "GORACE=" + strings.TrimSpace(v+" atexit_sleep_ms=0")
}

// Kill ends the child at once, as a crash would, and waits until it has
// exited. Its exit status is not checked afterwards.
func (c *Child) Kill() {
	c.killed.Store(true)
	c.cmd.Process.Kill() // os.ErrProcessDone if it exited already: fine
	<-c.done
}

// Signal sends sig to the child: syscall.SIGSTOP freezes it (its sockets
// stay open, it answers nothing) and syscall.SIGCONT thaws it. A test
// that freezes a child must thaw it before the test ends, or Stop waits
// StopTimeout for it and kills it.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Stop closes the child's stdin, which makes WaitStop return in the child,
// and waits for the child to exit, StopTimeout at most: then it kills it.
// It returns an error if the child exited with a status other than 0 (a
// data race found in it: status 66) or had to be killed; nil after Kill.
// Stop is idempotent. The test's cleanup calls it, and reports its error
// unless the test called Stop itself.
func (c *Child) Stop() error {
	c.checked.Store(true)
	return c.stop()
}

func (c *Child) stop() error {
	c.stopOnce.Do(func() {
		c.stdin.Close()
		timer := time.NewTimer(c.opts.StopTimeout)
		defer timer.Stop()
		select {
		case <-c.done:
			if c.err != nil && !c.killed.Load() {
				c.stopErr = fmt.Errorf("testchild %s: %w", c.role, c.err)
			}
		case <-timer.C:
			c.cmd.Process.Kill()
			<-c.done
			if !c.killed.Load() {
				c.stopErr = fmt.Errorf("testchild %s: did not exit within %v of its stdin closing; killed", c.role, c.opts.StopTimeout)
			}
		}
	})
	return c.stopErr
}

// Done is closed once the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }

// ExitCode is the child's exit status once Done is closed; -1 while it
// runs or if a signal ended it.
func (c *Child) ExitCode() int {
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Output returns what the child wrote on stderr, and on stdout apart from
// its info line, so far.
func (c *Child) Output() string { return c.out.String() }

// Watch returns a channel closed once the child's output contains s (at
// once if it already does): a test waits there for a line the child logs.
func (c *Child) Watch(s string) <-chan struct{} { return c.out.watch(s) }

// output keeps a child's output, copies it to log, and wakes watchers.
type output struct {
	mu       sync.Mutex
	log      io.Writer
	buf      bytes.Buffer // guarded by mu
	watchers []watcher    // guarded by mu: those not woken yet
}

type watcher struct {
	s    []byte
	from int // where in buf the search starts next
	ch   chan struct{}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	o.log.Write(p)
	o.wakeLocked()
	return len(p), nil
}

// wakeLocked closes the channel of each watcher whose string is in buf
// now. Each search starts where the last one could still have matched, so
// a chatty child costs each watcher its new bytes only.
func (o *output) wakeLocked() {
	b := o.buf.Bytes()
	kept := o.watchers[:0]
	for _, w := range o.watchers {
		if bytes.Contains(b[w.from:], w.s) {
			close(w.ch)
			continue
		}
		w.from = max(0, len(b)-len(w.s)+1)
		kept = append(kept, w)
	}
	o.watchers = kept
}

func (o *output) watch(s string) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := watcher{s: []byte(s), ch: make(chan struct{})}
	o.watchers = append(o.watchers, w)
	o.wakeLocked()
	return w.ch
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// lineWriter is the child's stdout: it splits it into lines, decodes the
// first info line into dst and reports on info, and passes every other
// line to out.
type lineWriter struct {
	out  *output
	dst  *peer.Info
	info chan error // one report, buffered

	mu      sync.Mutex
	partial []byte // guarded by mu: a line not ended yet
	found   bool   // guarded by mu: the info line was seen
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			break
		}
		w.partial = append(w.partial, p[:i+1]...)
		w.lineLocked(w.partial)
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush hands on a last line without a newline; called once stdout ended.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.lineLocked(w.partial)
		w.partial = nil
	}
}

func (w *lineWriter) lineLocked(line []byte) {
	if !w.found {
		if ok, err := parseInfoLine(line, w.dst); ok {
			w.found = true
			w.info <- err
			return
		}
	}
	w.out.Write(line)
}
