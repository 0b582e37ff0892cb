package stream_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// flakyListener fails Accept with the errors of errs, in turn, then hands
// out the connections sent on conns. Each Accept call's number (from 1)
// is sent on calls, if not nil, before it returns. Close makes Accept
// return net.ErrClosed.
type flakyListener struct {
	errs    []error
	forever bool // fail every Accept, cycling through errs
	conns   chan net.Conn
	calls   chan int

	mu sync.Mutex
	n  int // Accept calls so far; guarded by mu

	done chan struct{}
	once sync.Once
}

func newFlaky(errs ...error) *flakyListener {
	return &flakyListener{errs: errs, conns: make(chan net.Conn, 1), done: make(chan struct{})}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	if l.calls != nil {
		l.calls <- n
	}
	select {
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
	default:
	}
	if n <= len(l.errs) || l.forever {
		return nil, l.errs[(n-1)%len(l.errs)]
	}
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
	}
}

func (l *flakyListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// emfile is the error accept returns in a process out of descriptors.
var emfile = &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}

// syncBuffer is a bytes.Buffer that a logger on another goroutine may
// write to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func textLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestRetryAcceptBacksOff: failed accepts, temporary or not, are retried
// after 5, 10 and 20 ms; the first is logged at Warn, the others within
// the second are not, and the success that ends them is logged at Info.
func TestRetryAcceptBacksOff(t *testing.T) {
	fl := newFlaky(emfile, syscall.ECONNABORTED, errors.New("not temporary"))
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	fl.conns <- a
	var logs syncBuffer
	ln := stream.RetryAccept(fl, textLogger(&logs))
	defer ln.Close()

	start := time.Now()
	nc, err := ln.Accept()
	took := time.Since(start)
	if err != nil || nc != a {
		t.Fatalf("Accept = %v, %v; want the listener's connection", nc, err)
	}
	if min := 35 * time.Millisecond; took < min {
		t.Errorf("Accept took %v through 3 failures, want at least %v of pauses", took, min)
	}
	out := logs.String()
	t.Logf("log:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "too many open files") ||
		!strings.Contains(lines[1], "level=INFO") || !strings.Contains(lines[1], "failed_accepts=3") {
		t.Errorf("log:\n%s\nwant one Warn line for EMFILE, then one Info line for 3 failed accepts ending", out)
	}
}

// TestGroupAcceptSurvivesErrors: a Group's accept loop goes on through
// failed accepts and serves the connection that follows.
func TestGroupAcceptSurvivesErrors(t *testing.T) {
	defer goleak.VerifyNone(t)
	fl := newFlaky(emfile, emfile)
	a, b := net.Pipe()
	defer b.Close()
	fl.conns <- a
	g := stream.NewGroup(stream.Options{})
	bound := make(chan transport.Conn, 1)
	h := newCollector()
	if err := g.Accept(fl, func(c transport.Conn) transport.Handler { bound <- c; return h }, 0, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bound:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection after two failed accepts was not served")
	}
	g.Close()
	if err := <-h.closed; !errors.Is(err, transport.ErrClosed) {
		t.Errorf("connection closed with %v, want ErrClosed", err)
	}
}

// TestGroupCloseEndsAcceptPause: Close does not wait for the pause between
// failed accepts to end. The listener fails for good; Close comes while
// the loop waits 640 ms after its eighth failure.
func TestGroupCloseEndsAcceptPause(t *testing.T) {
	defer goleak.VerifyNone(t)
	fl := newFlaky(emfile)
	fl.forever = true
	fl.calls = make(chan int, 16)
	g := stream.NewGroup(stream.Options{})
	if err := g.Accept(fl, func(transport.Conn) transport.Handler { return newCollector() }, 0, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for n := 0; n < 8; {
		select {
		case n = <-fl.calls:
		case <-deadline:
			t.Fatalf("the accept loop stopped after %d failed accepts", n)
		}
	}
	start := time.Now()
	g.Close()
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("Close took %v, waiting out the pause between accepts", took)
	}
}
