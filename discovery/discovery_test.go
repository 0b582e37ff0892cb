package discovery_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/discoverytest"
	"github.com/velo-messenger/velo/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryConformance(t *testing.T) {
	d := discovery.NewMemory()
	discoverytest.Run(t, discoverytest.Harness{
		New: func(*testing.T) discovery.PeerDiscovery { return d },
		// Memory entries never expire; the TTL only paces the refresh
		// scenario.
		TTL: 100 * time.Millisecond,
	})
}

func TestMembership(t *testing.T) {
	id := func(b byte) peer.ID { return peer.ID{b} }
	info := func(b byte, addr string) peer.Info {
		return peer.Info{ID: id(b), Addresses: map[string]string{"tcp": addr}}
	}
	put := func(i peer.Info) discovery.Change { return discovery.Change{Kind: discovery.Put, Info: i} }
	del := func(b byte) discovery.Change {
		return discovery.Change{Kind: discovery.Delete, Info: peer.Info{ID: id(b)}}
	}
	for _, tc := range []struct {
		name  string
		start []peer.Info
		sync  []peer.Info
		want  []discovery.Change
	}{
		{"empty to empty", nil, nil, nil},
		{"first listing", nil, []peer.Info{info(1, "a"), info(2, "b")}, []discovery.Change{put(info(1, "a")), put(info(2, "b"))}},
		{"same listing again", []peer.Info{info(1, "a")}, []peer.Info{info(1, "a")}, nil},
		{"moved", []peer.Info{info(1, "a")}, []peer.Info{info(1, "b")}, []discovery.Change{put(info(1, "b"))}},
		{"gone in id order", []peer.Info{info(3, "c"), info(1, "a"), info(2, "b")}, []peer.Info{info(2, "b")}, []discovery.Change{del(1), del(3)}},
		{"all gone", []peer.Info{info(1, "a")}, nil, []discovery.Change{del(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := make(discovery.Membership)
			m.Sync(tc.start)
			got := m.Sync(tc.sync)
			if !slices.EqualFunc(got, tc.want, func(a, b discovery.Change) bool {
				return a.Kind == b.Kind && a.Info.String() == b.Info.String()
			}) {
				t.Fatalf("Sync = %v, want %v", got, tc.want)
			}
			if len(m) != len(tc.sync) {
				t.Fatalf("membership has %d entries after Sync of %d", len(m), len(tc.sync))
			}
		})
	}
	m := make(discovery.Membership)
	if _, ok := m.Apply(del(9)); ok {
		t.Error("Apply of a delete of an unknown instance reported a change")
	}
	if _, ok := m.Apply(discovery.Change{Kind: 0, Info: info(1, "a")}); ok {
		t.Error("Apply of a change of no kind reported a change")
	}
	// Apply copies: changing the Info afterwards does not change m.
	i := info(1, "a")
	m.Apply(put(i))
	i.Addresses["tcp"] = "changed"
	if m[id(1)].Addresses["tcp"] != "a" {
		t.Error("Membership shares the addresses map of an applied Info")
	}
}

func TestMemoryWatchEndsWithCtx(t *testing.T) {
	d := discovery.NewMemory()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range ch {
	}
	if _, err := d.Watch(ctx); err == nil {
		t.Fatal("Watch with an ended ctx succeeded")
	}
}

// A program that wants the membership, not only lookups, watches it.
func ExampleWatcher() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := discovery.NewMemory()
	id := peer.ID{0xab}
	reg, _ := d.Register(ctx, peer.Info{ID: id, Addresses: map[string]string{"tcp": "127.0.0.1:7000"}})

	changes, _ := d.Watch(ctx)
	c := <-changes
	fmt.Println(c.Kind, c.Info)
	reg.Close(ctx)
	c = <-changes
	fmt.Println(c.Kind, c.Info.ID.Short())
	// Output:
	// put ab000000{tcp=127.0.0.1:7000}
	// delete ab000000
}
