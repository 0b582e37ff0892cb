package http

import (
	"bytes"
	"testing"

	"github.com/velo-messenger/velo/internal/wire"
)

// The scanner finds the end of a goaway wherever the reads split the
// stream, and nothing else.
func TestFrameScannerFindsGoAway(t *testing.T) {
	var stream []byte
	stream = wire.AppendPing(stream, false, 1)
	stream = wire.AppendRequest(stream, &wire.Request{Kind: wire.KindUnary, ID: 7, Handler: "h", Payload: bytes.Repeat([]byte{byte(wire.TypeGoAway)}, 300)})
	stream = wire.AppendPing(stream, true, 2)
	end := len(stream)
	stream = wire.AppendGoAway(stream, wire.GoAway{Status: wire.StatusPeerLost, Message: "bye"})
	goAwayEnd := len(stream)
	stream = append(stream, "trailing junk"...)

	for chunk := 1; chunk <= len(stream); chunk++ {
		var s frameScanner
		found := -1
		for off := 0; off < len(stream); off += chunk {
			p := stream[off:min(off+chunk, len(stream))]
			if k := s.scan(p); k >= 0 {
				found = off + k
				break
			}
		}
		if found != goAwayEnd {
			t.Fatalf("reads of %d bytes: goaway ends at %d, want %d", chunk, found, goAwayEnd)
		}
		var s2 frameScanner
		if k := s2.scan(stream[:end]); k != -1 || s2.goneAway {
			t.Fatalf("a stream without goaway: scan = %d", k)
		}
	}
}

func TestFrameScannerStopsOnMalformed(t *testing.T) {
	var s frameScanner
	bad := []byte{0, 0, 0, 1, wire.Version, byte(wire.TypeGoAway)} // length too short for a header
	if k := s.scan(bad); k != -1 || !s.lost {
		t.Errorf("scan of a malformed frame = %d (lost %v), want -1 and lost", k, s.lost)
	}
}
