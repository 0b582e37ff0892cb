package velo

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"
)

// Shutdown stops the messenger gracefully:
//
//  1. new requests from peers are answered with ErrShuttingDown, and the
//     instance withdraws from discovery;
//  2. handlers finish what they are running and what is queued, until ctx
//     ends; then their ctx is cancelled and what is still queued is
//     answered with ErrShuttingDown;
//  3. peers are told (goaway), connections close, and calls of this
//     instance still waiting fail with ErrShuttingDown;
//  4. transports close and every goroutine of the messenger has returned.
//
// It returns ctx's error if handlers had to be cut short. Shutdown is
// idempotent; a second call waits for the first.
func (m *Messenger) Shutdown(ctx context.Context) error {
	first := false
	m.shutdownOnce.Do(func() { first = true })
	if !first {
		select {
		case <-m.shutdownDone:
			return m.shutdownErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer close(m.shutdownDone)

	m.hmu.Lock() // no registration races the snapshot of handlers below
	m.state.Store(stateDraining)
	m.hmu.Unlock()

	var errs []error
	if m.reg != nil {
		if err := m.reg.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}

	m.hmu.Lock()
	entries := slices.Collect(maps.Values(*m.handlers.Load()))
	for e := range m.retiring {
		entries = append(entries, e)
	}
	m.hmu.Unlock()
	var cut error
	for _, e := range entries {
		if err := e.actor.Stop(ctx); err != nil && cut == nil {
			cut = err
		}
	}
	if cut != nil {
		// Out of time: cancel the handlers still running and give them a
		// moment to notice before the connections go.
		m.stopHandlers()
		grace, cancel := context.WithTimeout(context.Background(), time.Second)
		for _, e := range entries {
			if err := e.actor.Stop(grace); err != nil {
				m.log.Warn("velo: handler ignores its ctx; abandoned at shutdown", "handler", e.name)
			}
		}
		cancel()
		errs = append(errs, cut)
	}

	// Streams end (their peers learn it when the connections close), and
	// events still pending are poisoned and the poisons sent to remote
	// awaiters while the connections are still open.
	m.streamsShutdown()
	if err := m.events.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}

	m.mu.Lock()
	m.state.Store(stateClosing)
	m.mu.Unlock()
	close(m.closing)
	m.cancelRun()

	m.mu.RLock()
	sessions := make([]*session, 0, len(m.sessions))
	for s := range m.sessions {
		sessions = append(sessions, s)
	}
	m.mu.RUnlock()
	// Say goodbye on every connection at once; a peer that does not read
	// gets a short while before its connection is closed under the write.
	// The reason is recorded first: the peer closes its end when it reads
	// the goaway, and our calls still pending must fail as shutting down,
	// not as a lost peer.
	reason := newError(CodeShuttingDown, "", nil, "instance %s is shutting down", m.id.Short())
	var bye sync.WaitGroup
	byeCtx, byeDone := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer byeDone()
	for _, s := range sessions {
		s.setReason(reason)
		bye.Go(func() { s.sendGoAway(byeCtx) })
	}
	waitFor(&bye, 250*time.Millisecond)
	// Each close may wait up to the transport's flush bound for a peer
	// that does not read: close them all at once, so that stuck peers cost
	// Shutdown one such bound, not one each.
	var closes sync.WaitGroup
	for _, s := range sessions {
		closes.Go(func() { s.close(reason) })
	}
	closes.Wait()
	for _, t := range m.transports {
		if err := t.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	m.self.Close()
	bye.Wait()
	m.wg.Wait()
	m.stopHandlers()
	m.payloads.close()
	m.state.Store(stateClosed)
	m.shutdownErr = errors.Join(errs...)
	return m.shutdownErr
}

// waitFor waits for wg, or for d at most.
func waitFor(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
