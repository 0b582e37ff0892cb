package velo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/system"
)

type order struct {
	Item string `msgpack:"item"`
	Qty  int
}

// TestDescribeRemote: _describe answers each handler's kind across the
// wire, and names one handler on request.
func TestDescribeRemote(t *testing.T) {
	a, b := pair(t)
	b.RegisterHandler(velo.TypedUnaryHandler("typed", func(context.Context, *velo.TypedContext[order]) (int, error) { return 0, nil }).Build())
	b.RegisterHandler(velo.AMHandler("am", func(context.Context, *velo.Context) error { return nil }).Build())
	descs, err := a.Describe(t.Context(), b.InstanceID())
	if err != nil {
		t.Fatal(err)
	}
	if len(descs) != 2 || len(descs[1].Input.Fields) != 2 || descs[1].Input.Fields[0].Name != "item" || descs[0].Name != "am" || descs[0].Kind != system.KindAM || descs[1].Kind != system.KindTyped || descs[1].Output.Kind != "int" || descs[1].Input.Type != "velo_test.order" {
		t.Fatalf("descriptions %+v", descs)
	}
}

// TestDialByAddress: Dial reaches an instance known only by its address,
// and calls to the id it learns use that connection.
func TestDialByAddress(t *testing.T) {
	a, b := pair(t)
	b.RegisterHandler(velo.UnaryHandler("hi", func(context.Context, *velo.Context) ([]byte, error) { return []byte("hi"), nil }).Build())
	addr, _ := b.PeerInfo().Address("tcp")
	info, err := a.Dial(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != b.InstanceID() {
		t.Fatalf("Dial learned %s, want %s", info.ID, b.InstanceID())
	}
	out, err := a.Unary("hi").Instance(info.ID).Send(t.Context())
	if err != nil || string(out) != "hi" {
		t.Fatalf("call after Dial: %q, %v", out, err)
	}
	if _, err := a.Dial(t.Context(), "carrier-pigeon", addr); !errors.Is(err, velo.ErrPeerUnknown) {
		t.Fatalf("Dial over a transport the instance lacks: %v", err)
	}
}
