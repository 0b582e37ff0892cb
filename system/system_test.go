package system

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// largestHello is the largest hello the limits allow.
func largestHello() HelloMsg {
	h := HelloMsg{Info: peer.Info{ID: peer.NewID(), Addresses: map[string]string{}}, MaxFrame: wire.DefaultMaxFrame, Protocol: wire.Version}
	per := MaxHelloHandlerBytes / MaxHelloHandlers
	for i := range MaxHelloHandlers {
		h.Handlers = append(h.Handlers, fmt.Sprintf("%0*d", per, i))
	}
	for i := range MaxHelloAddresses {
		h.Info.Addresses[fmt.Sprintf("%0*d", MaxTransportName, i)] = strings.Repeat("a", MaxAddress)
	}
	return h
}

// TestLargestHelloFits: the largest hello passes its limits and fits, as
// a request and as an answer, in a frame of wire.MaxHelloFrame.
func TestLargestHelloFits(t *testing.T) {
	h := largestHello()
	p, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeHello(p); err != nil {
		t.Fatalf("the largest hello: %v", err)
	}
	req := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Timeout: wire.MaxTimeout, Handler: Hello, Payload: p})
	resp := wire.AppendResponse(nil, &wire.Response{ID: 1, Payload: p})
	t.Logf("largest hello: %d bytes; request frame %d, answer %d, limit %d", len(p), len(req)-wire.PrefixLen, len(resp)-wire.PrefixLen, wire.MaxHelloFrame)
	for _, f := range [][]byte{req, resp} {
		if n := len(f) - wire.PrefixLen; n > wire.MaxHelloFrame {
			t.Errorf("frame of %d bytes, over MaxHelloFrame (%d)", n, wire.MaxHelloFrame)
		}
	}
}

// TestHelloLimits: a hello one step over any limit is refused with
// ErrHelloLimits.
func TestHelloLimits(t *testing.T) {
	for name, change := range map[string]func(h *HelloMsg){
		"one handler too many": func(h *HelloMsg) { h.Handlers = append(h.Handlers[:MaxHelloHandlers-1], "a", "b") },
		"names too long":       func(h *HelloMsg) { h.Handlers[0] += "x" },
		"empty name":           func(h *HelloMsg) { h.Handlers[0] = "" },
		"name of 256 bytes":    func(h *HelloMsg) { h.Handlers = []string{strings.Repeat("n", wire.MaxHandlerName+1)} },
		"one address too many": func(h *HelloMsg) { h.Info.Addresses["x"] = "y" },
		"empty transport name": func(h *HelloMsg) { h.Info.Addresses = map[string]string{"": "y"} },
		"long transport name":  func(h *HelloMsg) { h.Info.Addresses = map[string]string{strings.Repeat("t", MaxTransportName+1): "y"} },
		"address one too long": func(h *HelloMsg) { h.Info.Addresses = map[string]string{"tcp": strings.Repeat("a", MaxAddress+1)} },
	} {
		h := largestHello()
		change(&h)
		p, err := h.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeHello(p); !errors.Is(err, ErrHelloLimits) {
			t.Errorf("%s: DecodeHello = %v, want ErrHelloLimits", name, err)
		}
	}
}

// TestHelloBombs: hellos made to cost the receiver memory are refused
// before they are decoded: 8 M empty handler names in 8 MiB (a []string
// of 128 MiB), and 23 bytes that announce a map of 4 G addresses behind
// an ext header (msgpack read it, Check did not, and made a map for 1 M
// entries: 80 MiB).
func TestHelloBombs(t *testing.T) {
	const n = 8 << 20
	names := append([]byte{0x81, 0xa8, 'h', 'a', 'n', 'd', 'l', 'e', 'r', 's', 0xdd, n >> 24, n >> 16 & 0xff, n >> 8 & 0xff, n & 0xff},
		bytes.Repeat([]byte{0xa0}, n)...)
	ext := []byte{0x81, 0xa4, 'i', 'n', 'f', 'o', 0x81, 0xa5, 'a', 'd', 'd', 'r', 's', 0xd7, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}
	for name, p := range map[string][]byte{"8 M names": names, "ext map": ext} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := DecodeHello(p)
		runtime.ReadMemStats(&after)
		got := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s (%d bytes): %v; %d bytes allocated", name, len(p), err, got)
		if err == nil {
			t.Errorf("%s: decoded", name)
		}
		if got > 64<<10 {
			t.Errorf("%s: %d bytes allocated, want at most 64 KiB", name, got)
		}
	}
}
