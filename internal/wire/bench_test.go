package wire_test

import (
	"bufio"
	"testing"

	"github.com/velo-messenger/velo/internal/wire"
)

// The benchmarks use the common small call: a 32-byte payload, no headers.
var (
	benchRequest = wire.Request{
		Kind: wire.KindUnary, ID: 1 << 40, Timeout: 5e9, Handler: "kv.get", Payload: seq(32),
	}
	benchResponse = wire.Response{ID: 1 << 40, Status: wire.StatusOK, Payload: seq(32)}
)

// TestAppendDoesNotAllocate holds the encoders to the hot-path rule: with a
// reused buffer of sufficient capacity, encoding allocates nothing.
func TestAppendDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	headers := &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: "h",
		Headers: map[string]string{"trace": "abc", "tenant": "blue"}, Payload: seq(32)}
	encoders := map[string]func(){
		"request":              func() { buf = wire.AppendRequest(buf[:0], &benchRequest) },
		"request with headers": func() { buf = wire.AppendRequest(buf[:0], headers) },
		"response":             func() { buf = wire.AppendResponse(buf[:0], &benchResponse) },
		"cancel":               func() { buf = wire.AppendCancel(buf[:0], 1) },
		"ping":                 func() { buf = wire.AppendPing(buf[:0], false, 1) },
		"goaway":               func() { buf = wire.AppendGoAway(buf[:0], wire.GoAway{Status: 11, Message: "bye"}) },
	}
	for name, enc := range encoders {
		if n := testing.AllocsPerRun(100, enc); n != 0 {
			t.Errorf("%s: %.1f allocations per frame, want 0", name, n)
		}
	}
	// Decoding a response without error text copies nothing.
	b := wire.AppendResponse(nil, &benchResponse)[wire.HeaderLen:]
	if n := testing.AllocsPerRun(100, func() { _, _ = wire.ParseResponse(b) }); n != 0 {
		t.Errorf("ParseResponse: %.1f allocations, want 0", n)
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	buf := make([]byte, 0, wire.RequestLen(&benchRequest))
	b.ReportAllocs()
	b.SetBytes(int64(wire.RequestLen(&benchRequest)))
	for b.Loop() {
		buf = wire.AppendRequest(buf[:0], &benchRequest)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	frame := wire.AppendRequest(nil, &benchRequest)
	body := frame[wire.HeaderLen:]
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := wire.ParseRequest(body, wire.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendResponse(b *testing.B) {
	buf := make([]byte, 0, wire.ResponseLen(&benchResponse))
	b.ReportAllocs()
	b.SetBytes(int64(wire.ResponseLen(&benchResponse)))
	for b.Loop() {
		buf = wire.AppendResponse(buf[:0], &benchResponse)
	}
}

func BenchmarkParseResponse(b *testing.B) {
	frame := wire.AppendResponse(nil, &benchResponse)
	body := frame[wire.HeaderLen:]
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := wire.ParseResponse(body); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader yields b over and over, as a connection that always has the
// next frame ready.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// BenchmarkReadFrame reads request frames from a 64 KiB buffered stream
// (the stream transport's default): the common small call, a frame of
// exactly 64 KiB, and a 1 MiB one.
func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []struct {
		name    string
		payload int
	}{{"32B", 32}, {"64KiB", 64<<10 - wire.RequestLen(&wire.Request{Handler: "kv.get"}) + wire.PrefixLen}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			frame := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: "kv.get", Payload: seq(size.payload)})
			fr := wire.NewFrameReader(bufio.NewReaderSize(&loopReader{b: frame}, 64<<10), 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := fr.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
