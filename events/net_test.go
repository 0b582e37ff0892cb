package events

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo/peer"
)

// errUnreachable is what fakeNet.Send returns for a peer set to fail.
var errUnreachable = errors.New("fakenet: peer unreachable")

// fakeNet is an in-memory network between managers. Send hands the message
// to the destination's Deliver on a new goroutine, like a transport whose
// receive path runs elsewhere. It counts messages per handler and can make
// sends to a peer fail or vanish.
type fakeNet struct {
	mu     sync.Mutex
	nodes  map[peer.ID]*Manager
	counts map[string]int            // handed over (delivered or dropped), per handler
	failed map[string]int            // refused with errUnreachable, per handler
	failTo map[peer.ID]bool          // Send to this peer returns errUnreachable
	dropTo map[peer.ID]bool          // Send to this peer succeeds, nothing arrives
	errs   []error                   // unexpected Deliver errors
	dead   map[*Manager]*atomic.Bool // set by restart: the manager sends nothing

	inflight int            // deliveries running, guarded by mu
	wg       sync.WaitGroup // the same deliveries, for the final cleanup
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		nodes:  make(map[peer.ID]*Manager),
		counts: make(map[string]int),
		failed: make(map[string]int),
		failTo: make(map[peer.ID]bool),
		dropTo: make(map[peer.ID]bool),
		dead:   make(map[*Manager]*atomic.Bool),
	}
}

// endpoint is the Network one instance sees.
type endpoint struct {
	f    *fakeNet
	self peer.ID
	dead *atomic.Bool // this incarnation of self was killed
}

func (e endpoint) Send(ctx context.Context, to peer.ID, handler string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.dead.Load() {
		return errUnreachable
	}
	f := e.f
	f.mu.Lock()
	if f.failTo[to] {
		f.failed[handler]++
		f.mu.Unlock()
		return errUnreachable
	}
	f.counts[handler]++
	node := f.nodes[to]
	if node == nil {
		f.mu.Unlock()
		return errUnreachable
	}
	if f.dropTo[to] {
		f.mu.Unlock()
		return nil
	}
	f.wg.Add(1)
	f.inflight++
	f.mu.Unlock()
	p := bytes.Clone(payload)
	go func() {
		defer f.wg.Done()
		err := node.Deliver(context.Background(), e.self, handler, p)
		f.mu.Lock()
		f.inflight--
		if err != nil && !errors.Is(err, ErrClosed) {
			f.errs = append(f.errs, err)
		}
		f.mu.Unlock()
	}()
	return nil
}

// add creates a manager attached to the network. The test's cleanup closes
// it, waits for deliveries in flight and reports unexpected Deliver errors.
func (f *fakeNet) add(t testing.TB, opts Options) *Manager {
	return f.addAs(t, peer.NewID(), opts)
}

// restart kills old, as SIGKILL would (it sends nothing from now on; its
// peers are not told), and starts a new manager under the same ID in its
// place, as a process restarted with a fixed instance ID.
func (f *fakeNet) restart(t testing.TB, old *Manager, opts Options) *Manager {
	f.mu.Lock()
	f.dead[old].Store(true)
	f.mu.Unlock()
	old.Close()
	return f.addAs(t, old.Self(), opts)
}

// addAs is add for the instance id; a manager already there under id is
// replaced.
func (f *fakeNet) addAs(t testing.TB, id peer.ID, opts Options) *Manager {
	dead := new(atomic.Bool)
	m := NewManager(id, endpoint{f: f, self: id, dead: dead}, opts)
	f.mu.Lock()
	f.nodes[id] = m
	f.dead[m] = dead
	first := len(f.dead) == 1
	f.mu.Unlock()
	if first {
		// Registered before any Close, so it runs after all of them.
		t.Cleanup(func() {
			f.wg.Wait()
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, err := range f.errs {
				t.Errorf("Deliver: %v", err)
			}
		})
	}
	t.Cleanup(m.Close)
	return m
}

func (f *fakeNet) count(handler string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[handler]
}

func (f *fakeNet) failures(handler string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[handler]
}

func (f *fakeNet) setFail(to peer.ID, fail bool) {
	f.mu.Lock()
	f.failTo[to] = fail
	f.mu.Unlock()
}

func (f *fakeNet) setDrop(to peer.ID, drop bool) {
	f.mu.Lock()
	f.dropTo[to] = drop
	f.mu.Unlock()
}

// quiet reports whether no delivery is running.
func (f *fakeNet) quiet() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight == 0
}

// takeErrs returns and forgets the Deliver errors seen so far.
func (f *fakeNet) takeErrs() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := f.errs
	f.errs = nil
	return errs
}

// waitFor polls cond until it holds, failing the test if it does not
// within a generous bound. Only the bound is a clock: nothing asserts how
// fast cond became true.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitCtx is the bound each Wait of a test gets: hitting it fails the test.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
