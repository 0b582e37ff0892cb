package stream

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// How a listener retries a failed accept, as net/http does: the first
// retry after acceptBackoffMin, each next one after twice the last, up to
// acceptBackoffMax; an accepted connection starts over.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptWarnEvery is the least time between two log lines about failed
// accepts on one listener: a process out of descriptors fails every retry.
const acceptWarnEvery = time.Second

// nextAcceptBackoff is the pause before the next accept, given the last
// one (zero after a success).
func nextAcceptBackoff(last time.Duration) time.Duration {
	if last <= 0 {
		return acceptBackoffMin
	}
	return min(2*last, acceptBackoffMax)
}

// RetryAccept returns ln with an Accept that does not fail while ln is
// open: an error other than the listener's closing (too many open files,
// out of buffers, a connection aborted) is logged and Accept tries again
// after a pause, as net/http does (5 ms doubling to 1 s). Close ends a pause
// at once. The failures are logged to log at Warn, at most one line per
// second with the count of those left out, and the first success after
// them at Info; nil logs nothing.
//
// net/http's and gRPC's servers retry some of these errors themselves, but
// net/http sleeps through its own Close and logs each retry, and both give
// up on errors they do not call temporary; under RetryAccept they only see
// connections and the listener's closing.
func RetryAccept(ln net.Listener, log *slog.Logger) net.Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &retryListener{
		Listener: ln,
		log:      log.With("addr", ln.Addr().String()),
		done:     make(chan struct{}),
	}
}

type retryListener struct {
	net.Listener
	log   *slog.Logger
	done  chan struct{} // closed by Close
	close sync.Once

	mu   sync.Mutex
	warn acceptWarn // guarded by mu
}

func (l *retryListener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err == nil {
			l.accepted(time.Now())
			return nc, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		pause = nextAcceptBackoff(pause)
		l.failed(time.Now(), err, pause)
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-l.done:
			// Close may not have closed the listener itself yet: say
			// what Accept on it would say in a moment.
			timer.Stop()
			return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
		}
	}
}

// Close ends a pause of Accept, then closes the listener.
func (l *retryListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *retryListener) failed(now time.Time, err error, pause time.Duration) {
	l.mu.Lock()
	logIt, left := l.warn.failed(now)
	l.mu.Unlock()
	if logIt {
		l.log.Warn("velo: accept failed; retrying", "err", err, "retry_in", pause, "not_logged", left)
	}
}

func (l *retryListener) accepted(now time.Time) {
	l.mu.Lock()
	logIt, n, lasted := l.warn.accepted(now)
	l.mu.Unlock()
	if logIt {
		l.log.Info("velo: accepting connections again", "failed_accepts", n, "after", lasted.Round(time.Millisecond))
	}
}

// acceptWarn decides which failed accepts a listener logs: at most one per
// acceptWarnEvery, and the success that ends a run of failures of which one
// was logged. So a listener that fails and recovers over and over still
// logs at most two lines a second. It does no I/O and reads no clock, so
// tests drive it with made-up times.
type acceptWarn struct {
	lastLog  time.Time // when a failure was last logged; zero: never
	unlogged int       // failures since then not logged

	failures  int       // since the last accepted connection
	first     time.Time // of those failures
	runLogged bool      // one of those failures was logged
}

// failed records a failure at now and reports whether to log it and how
// many failures since the last line logged were not.
func (w *acceptWarn) failed(now time.Time) (logIt bool, notLogged int) {
	if w.failures == 0 {
		w.first = now
	}
	w.failures++
	if !w.lastLog.IsZero() && now.Sub(w.lastLog) < acceptWarnEvery {
		w.unlogged++
		return false, 0
	}
	notLogged = w.unlogged
	w.lastLog, w.unlogged, w.runLogged = now, 0, true
	return true, notLogged
}

// accepted records a success at now and reports whether to log it (it ends
// a run of failures of which one was logged), with the failures of the run
// and how long it lasted.
func (w *acceptWarn) accepted(now time.Time) (logIt bool, failures int, lasted time.Duration) {
	if w.failures == 0 {
		return false, 0, 0
	}
	logIt, failures, lasted = w.runLogged, w.failures, now.Sub(w.first)
	w.failures, w.runLogged = 0, false
	return logIt, failures, lasted
}
