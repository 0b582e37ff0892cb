package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/discoverytest"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// childRole is the testchild role of an instance registered in the file
// its argument names (runChild), so that a test can kill a real process.
const childRole = "registered"

const testTTL = time.Second

func TestMain(m *testing.M) {
	testchild.Main(map[string]func() int{childRole: runChild})
	goleak.VerifyTestMain(m)
}

// runChild starts a messenger registered in the file its argument names,
// serving "whoami", prints its peer.Info, and runs until killed or
// stopped.
func runChild() int {
	ctx := context.Background()
	args := testchild.Args()
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "child: want the registry file's path as the argument, got", args)
		return 2
	}
	reg, err := New(args[0], Options{TTL: testTTL})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	m, err := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{Listen: "127.0.0.1:0"})).Discovery(reg).Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	m.RegisterHandler(velo.UnaryHandler("whoami", func(context.Context, *velo.Context) ([]byte, error) {
		return []byte(m.InstanceID().String()), nil
	}).Build())
	if err := testchild.PrintInfo(m.PeerInfo()); err != nil {
		return 2
	}
	testchild.WaitStop()
	m.Shutdown(ctx)
	return 0
}

func newRegistry(t *testing.T, path string) *Registry {
	t.Helper()
	r, err := New(path, Options{TTL: testTTL, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	discoverytest.Run(t, discoverytest.Harness{
		New: func(t *testing.T) discovery.PeerDiscovery { return newRegistry(t, path) },
		TTL: testTTL,
		Abandon: func(t *testing.T, reg discovery.Registration) {
			reg.(*registration).stop()
		},
	})
}

// TestKilledProcessExpires kills a registered process with SIGKILL: its
// entry stays until its TTL runs out, then lookups stop finding it and a
// send to it fails as unknown.
func TestKilledProcessExpires(t *testing.T) {
	ctx := discoverytest.Ctx(t)
	path := filepath.Join(t.TempDir(), "peers.json")
	child := testchild.Start(t, childRole, testchild.Options{Args: []string{path}})
	id := child.Info.ID

	r := newRegistry(t, path)
	m, err := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{Listen: "127.0.0.1:0"})).Discovery(r).Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	got, err := m.Unary("whoami").Instance(id).Send(ctx)
	if err != nil || string(got) != id.String() {
		t.Fatalf("whoami before the kill = %q, %v", got, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	changes, err := r.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for range changes {
		}
	}()

	child.Kill()
	killed := time.Now()
	if err := discoverytest.Gone(ctx, r, id); err == nil {
		t.Log("entry already gone right after the kill (it was close to expiry)")
	}
	took, err := discoverytest.Eventually(testTTL+time.Second, func() error { return discoverytest.Gone(ctx, r, id) })
	if err != nil {
		t.Fatalf("killed process: %v", err)
	}
	t.Logf("killed process gone from lookups after %v (TTL %v)", took.Round(time.Millisecond), testTTL)
	// The watch saw it, then saw it go.
	known := make(discovery.Membership)
	timeout := time.After(5 * time.Second)
	for sawPut, sawDelete := false, false; !sawPut || !sawDelete; {
		select {
		case c := <-changes:
			if c.Info.ID != id {
				continue
			}
			known.Apply(c)
			sawPut = sawPut || c.Kind == discovery.Put
			sawDelete = sawDelete || (sawPut && c.Kind == discovery.Delete)
		case <-timeout:
			t.Fatalf("watch did not report the killed process going (put %v, delete %v)", sawPut, sawDelete)
		}
	}
	_, err = m.Unary("whoami").Instance(id).Send(ctx)
	if !errors.Is(err, velo.ErrPeerUnknown) {
		t.Fatalf("send %v after the kill: %v, want ErrPeerUnknown", time.Since(killed).Round(time.Millisecond), err)
	}
}

// TestConcurrentWriters registers from many registries at once: the lock
// keeps every entry (no lost update).
func TestConcurrentWriters(t *testing.T) {
	ctx := discoverytest.Ctx(t)
	path := filepath.Join(t.TempDir(), "peers.json")
	const n = 24
	infos := make([]peer.Info, n)
	regs := make([]discovery.Registration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		infos[i] = discoverytest.NewInfo(fmt.Sprintf("127.0.0.1:%d", 2000+i))
		wg.Go(func() {
			regs[i], errs[i] = newRegistry(t, path).Register(ctx, infos[i])
		})
	}
	wg.Wait()
	r := newRegistry(t, path)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Register %d: %v", i, errs[i])
		}
		if err := discoverytest.Found(ctx, r, infos[i]); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	for i := range n {
		wg.Go(func() { errs[i] = regs[i].Close(ctx) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Close %d: %v", i, errs[i])
		}
		if err := discoverytest.Gone(ctx, r, infos[i].ID); err != nil {
			t.Errorf("entry %d after Close: %v", i, err)
		}
	}
}

// TestUnreadableFile: a corrupt registry makes lookups fail with an error
// that is not ErrNotFound (the messenger then keeps the address it had),
// and the next writer replaces it.
func TestUnreadableFile(t *testing.T) {
	ctx := discoverytest.Ctx(t)
	path := filepath.Join(t.TempDir(), "peers.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRegistry(t, path)
	if _, err := r.Lookup(ctx, peer.NewID()); err == nil || errors.Is(err, discovery.ErrNotFound) {
		t.Fatalf("Lookup in a corrupt file: %v, want an error other than ErrNotFound", err)
	}
	info := discoverytest.NewInfo("127.0.0.1:3000")
	reg, err := r.Register(ctx, info)
	if err != nil {
		t.Fatalf("Register over a corrupt file: %v", err)
	}
	defer reg.Close(ctx)
	if err := discoverytest.Found(ctx, r, info); err != nil {
		t.Fatal(err)
	}
}

// TestRemovedFileIsRewritten: a registry file deleted under the running
// registrations is written again by their next refresh.
func TestRemovedFileIsRewritten(t *testing.T) {
	ctx := discoverytest.Ctx(t)
	path := filepath.Join(t.TempDir(), "peers.json")
	r := newRegistry(t, path)
	info := discoverytest.NewInfo("127.0.0.1:3001")
	reg, err := r.Register(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := discoverytest.Gone(ctx, r, info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := discoverytest.Eventually(testTTL, func() error { return discoverytest.Found(ctx, r, info) }); err != nil {
		t.Fatalf("entry not rewritten: %v", err)
	}
}

// TestLockWaitEndsWithCtx: a writer waiting for a lock held elsewhere
// gives up when its ctx ends.
func TestLockWaitEndsWithCtx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	r := newRegistry(t, path)
	unlock, err := lockFile(context.Background(), r.lockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r.Register(ctx, discoverytest.NewInfo("127.0.0.1:3002"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register with the lock held elsewhere: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Register gave up after %v", d)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"refresh below ttl", Options{TTL: time.Second, Refresh: 500 * time.Millisecond}, true},
		{"refresh equal to ttl", Options{TTL: time.Second, Refresh: time.Second}, false},
		{"negative ttl", Options{TTL: -1}, false},
		{"negative poll", Options{PollInterval: -1}, false},
	} {
		_, err := New(filepath.Join(t.TempDir(), "p.json"), tc.opts)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	o, _ := Options{}.withDefaults()
	if o.TTL != 10*time.Second || o.Refresh != o.TTL/3 {
		t.Errorf("defaults: TTL %v Refresh %v", o.TTL, o.Refresh)
	}
	if _, err := New("", Options{}); err == nil {
		t.Error("New with an empty path succeeded")
	}
}
