package wire_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// fuzzMaxFrame is the FrameReader limit FuzzFrameReader runs with: small,
// so that the fuzzer reaches the limit easily.
const fuzzMaxFrame = 1024

// smallLimits are tighter than the defaults, to drive the limit checks.
var smallLimits = wire.Limits{MaxHeaders: 2, MaxHeaderBytes: 16}

// seedFrames returns whole frames (length prefix included) that seed both
// fuzzers: a valid one of each type and shape, then malformed ones.
func seedFrames() map[string][]byte {
	seeds := map[string][]byte{
		"request-golden": wire.AppendRequest(nil, &goldenRequestValue),
		"request-am-send": wire.AppendRequest(nil, &wire.Request{
			Kind: wire.KindAMSend, ID: 1, Handler: "log.append", Payload: []byte("line"),
		}),
		"request-am-sync-deadline": wire.AppendRequest(nil, &wire.Request{
			Kind: wire.KindAMSync, ID: 2, Timeout: 250 * time.Millisecond, Handler: "kv.put",
		}),
		"request-hello": wire.AppendRequest(nil, &wire.Request{
			Kind: wire.KindUnary, ID: 3, Timeout: wire.MaxTimeout, Handler: "_hello", Payload: []byte{0x80},
		}),
		// Built by hand: AppendRequest writes headers in map order, and
		// the corpus files must not change from one run to the next.
		"request-two-headers": frameOf(wire.TypeRequest,
			rawRequestBody(wire.KindUnary, 4, 0, "h", []rawHeader{{"a", "1"}, {"b", "2"}}, "")),
		"response-golden": wire.AppendResponse(nil, &goldenResponseValue),
		"response-ok":     wire.AppendResponse(nil, &wire.Response{ID: 5, Payload: []byte("result")}),
		"response-bare":   wire.AppendResponse(nil, &wire.Response{ID: 6, Status: wire.StatusEventPoisoned}),
		"cancel":          wire.AppendCancel(nil, 7),
		"ping":            wire.AppendPing(nil, false, 0x0102030405060708),
		"pong":            wire.AppendPing(nil, true, math.MaxUint64),
		"goaway":          wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown, Message: "bye"}),
		"goaway-empty":    wire.AppendGoAway(nil, wire.GoAway{}),
		"chunk-first":     wire.AppendChunk(nil, &wire.Chunk{ID: 1, Flags: wire.ChunkFirst, Total: 10, Data: []byte("abc")}),
		"chunk-last":      wire.AppendChunk(nil, &wire.Chunk{ID: 1, Flags: wire.ChunkLast, Data: []byte("defghij")}),
		"chunk-abort":     wire.AppendChunk(nil, &wire.Chunk{ID: 2, Flags: wire.ChunkAbort}),
	}

	bad := func(f []byte, at int, v byte) []byte {
		f = bytes.Clone(f)
		f[at] = v
		return f
	}
	golden := seeds["request-golden"]
	seeds["bad-version"] = bad(golden, wire.PrefixLen, 2)
	seeds["bad-type"] = bad(golden, wire.PrefixLen+1, 7)
	seeds["bad-kind"] = bad(golden, wire.HeaderLen, 4)
	seeds["bad-status"] = bad(seeds["response-golden"], wire.HeaderLen+8, 19)
	seeds["bad-empty-name"] = frameOf(wire.TypeRequest, rawRequestBody(wire.KindUnary, 1, 0, "", nil, ""))
	seeds["bad-timeout"] = frameOf(wire.TypeRequest, rawRequestBody(wire.KindUnary, 1, math.MaxUint64, "h", nil, ""))
	seeds["bad-duplicate-header"] = frameOf(wire.TypeRequest,
		rawRequestBody(wire.KindUnary, 1, 0, "h", []rawHeader{{"k", "1"}, {"k", "2"}}, ""))
	seeds["bad-truncated-request"] = frameOf(wire.TypeRequest, golden[wire.HeaderLen:wire.HeaderLen+20])
	seeds["bad-error-length"] = frameOf(wire.TypeResponse, []byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0xff, 0xff, 0xff, 0xff})
	seeds["bad-cancel-long"] = frameOf(wire.TypeCancel, make([]byte, 9))
	return seeds
}

// frameOf wraps a body in a frame envelope; the length prefix is correct,
// whatever the body holds.
func frameOf(t wire.Type, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(wire.HeaderLen-wire.PrefixLen+len(body)))
	b = append(b, wire.Version, byte(t))
	return append(b, body...)
}

// seedStreams returns byte streams for FuzzFrameReader.
func seedStreams() map[string][]byte {
	frames := seedFrames()
	var all []byte
	for _, name := range []string{"request-golden", "response-golden", "cancel", "ping", "pong", "goaway"} {
		all = append(all, frames[name]...)
	}
	return map[string][]byte{
		"empty":          {},
		"one-frame":      frames["request-golden"],
		"every-type":     all,
		"too-large":      {0xff, 0xff, 0xff, 0xff, 1, 1},
		"just-over-max":  append(binary.BigEndian.AppendUint32(nil, fuzzMaxFrame+1), 1, 1),
		"short-length":   {0, 0, 0, 1, 1},
		"zero-length":    {0, 0, 0, 0},
		"cut-in-prefix":  {0, 0},
		"cut-in-body":    all[:len(all)-3],
		"frame-then-bad": append(bytes.Clone(frames["cancel"]), 0, 0, 0x10, 0),
	}
}

// FuzzParseFrame feeds arbitrary bytes to the decoders as a frame without
// its length prefix. Nothing may panic; every error wraps ErrMalformed;
// whatever decodes re-encodes to a frame that decodes to the same value,
// and, where the encoding is canonical, to the very same bytes.
func FuzzParseFrame(f *testing.F) {
	for _, frame := range seedFrames() {
		f.Add(frame[wire.PrefixLen:])
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		typ, b, err := wire.ParseHeader(frame)
		if err != nil {
			mustMalformed(t, err, "ParseHeader")
			return
		}
		var enc []byte
		canonical := true
		switch typ {
		case wire.TypeRequest:
			r, err := wire.ParseRequest(b, wire.Limits{})
			small, errSmall := wire.ParseRequest(b, smallLimits)
			if errSmall == nil && err != nil {
				t.Fatalf("decodes under tighter limits but not under the defaults: %v", err)
			}
			if err != nil {
				mustMalformed(t, err, "ParseRequest")
				return
			}
			if errSmall == nil {
				if d := diffRequest(small, r); d != "" {
					t.Fatalf("decoded differently under tighter limits: %s", d)
				}
			} else {
				mustMalformed(t, errSmall, "ParseRequest with small limits")
			}
			if err := wire.CheckRequest(&r, wire.Limits{}); err != nil {
				t.Fatalf("a decoded request fails CheckRequest: %v", err)
			}
			enc = wire.AppendRequest(nil, &r)
			if n := wire.RequestLen(&r); n != len(enc) {
				t.Fatalf("RequestLen %d, frame of %d bytes", n, len(enc))
			}
			// Headers come out of a map in any order.
			canonical = len(r.Headers) <= 1
			again, err := wire.ParseRequest(body(t, enc, wire.TypeRequest), wire.Limits{})
			if err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
			if d := diffRequest(again, r); d != "" {
				t.Fatalf("re-encoded request differs: %s", d)
			}

		case wire.TypeResponse:
			r, err := wire.ParseResponse(b)
			if err != nil {
				mustMalformed(t, err, "ParseResponse")
				return
			}
			enc = wire.AppendResponse(nil, &r)
			if n := wire.ResponseLen(&r); n != len(enc) {
				t.Fatalf("ResponseLen %d, frame of %d bytes", n, len(enc))
			}
			again, err := wire.ParseResponse(body(t, enc, wire.TypeResponse))
			if err != nil {
				t.Fatalf("re-encoded response does not decode: %v", err)
			}
			if d := diffResponse(again, r); d != "" {
				t.Fatalf("re-encoded response differs: %s", d)
			}

		case wire.TypeCancel:
			id, err := wire.ParseCancel(b)
			if err != nil {
				mustMalformed(t, err, "ParseCancel")
				return
			}
			enc = wire.AppendCancel(nil, id)
			if again, err := wire.ParseCancel(body(t, enc, wire.TypeCancel)); err != nil || again != id {
				t.Fatalf("re-encoded cancel decodes as %d, %v; want %d", again, err, id)
			}

		case wire.TypePing, wire.TypePong:
			data, err := wire.ParsePing(b)
			if err != nil {
				mustMalformed(t, err, "ParsePing")
				return
			}
			enc = wire.AppendPing(nil, typ == wire.TypePong, data)
			if again, err := wire.ParsePing(body(t, enc, typ)); err != nil || again != data {
				t.Fatalf("re-encoded %v decodes as %#x, %v; want %#x", typ, again, err, data)
			}

		case wire.TypeGoAway:
			g, err := wire.ParseGoAway(b)
			if err != nil {
				mustMalformed(t, err, "ParseGoAway")
				return
			}
			enc = wire.AppendGoAway(nil, g)
			if again, err := wire.ParseGoAway(body(t, enc, wire.TypeGoAway)); err != nil || again != g {
				t.Fatalf("re-encoded goaway decodes as %+v, %v; want %+v", again, err, g)
			}

		case wire.TypeChunk:
			c, err := wire.ParseChunk(b)
			if err != nil {
				mustMalformed(t, err, "ParseChunk")
				return
			}
			enc = wire.AppendChunk(nil, &c)
			again, err := wire.ParseChunk(body(t, enc, wire.TypeChunk))
			if err != nil || again.ID != c.ID || again.Flags != c.Flags || again.Total != c.Total || !bytes.Equal(again.Data, c.Data) {
				t.Fatalf("re-encoded chunk decodes as %+v, %v; want %+v", again, err, c)
			}

		default:
			t.Fatalf("ParseHeader accepted type %d", typ)
		}

		// Every field has one encoding, so what decodes re-encodes to the
		// input itself: the decoders accept no slack.
		if canonical && !bytes.Equal(enc[wire.PrefixLen:], frame) {
			t.Fatalf("re-encoded %v differs from the input:\n got % x\nwant % x", typ, enc[wire.PrefixLen:], frame)
		}
	})
}

// FuzzFrameReader reads arbitrary streams with a small maximum, and a
// small first buffer so that most frames grow theirs. Nothing may panic;
// every frame returned is the next slice of the stream and within the
// limit; the reader stops with the one error the stream calls for.
func FuzzFrameReader(f *testing.F) {
	for _, s := range seedStreams() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		fr := wire.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), 16), fuzzMaxFrame)
		// Frames past 16 bytes grow their buffer as they arrive.
		wire.SetStep(fr, 16)
		at := 0 // offset of the next frame's prefix in stream
		for {
			frame, err := fr.ReadFrame()
			rest := stream[at:]
			if err == nil {
				if len(frame) > fuzzMaxFrame || len(frame) < 2 {
					t.Fatalf("frame of %d bytes, limits 2..%d", len(frame), fuzzMaxFrame)
				}
				if len(rest) < wire.PrefixLen+len(frame) || wire.FrameLen(rest) != len(frame) ||
					!bytes.Equal(frame, rest[wire.PrefixLen:wire.PrefixLen+len(frame)]) {
					t.Fatalf("frame at offset %d is not the stream's next frame", at)
				}
				at += wire.PrefixLen + len(frame)
				continue
			}
			if frame != nil {
				t.Fatalf("%d bytes returned with error %v", len(frame), err)
			}
			var want error
			switch {
			case len(rest) == 0:
				want = io.EOF
			case len(rest) < wire.PrefixLen:
				want = io.ErrUnexpectedEOF
			case wire.FrameLen(rest) > fuzzMaxFrame:
				want = wire.ErrFrameTooLarge
			case wire.FrameLen(rest) < 2:
				want = wire.ErrMalformed
			default:
				want = io.ErrUnexpectedEOF
			}
			if !errors.Is(err, want) {
				t.Fatalf("at offset %d of %d: %v, want %v", at, len(stream), err, want)
			}
			return
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// TestWriteSeedCorpus regenerates the committed seed corpus from the seeds
// above when run with -update-corpus; otherwise it checks that the corpus
// is there. Crashers the fuzzer finds are committed next to these files,
// under their own names, and are never rewritten.
func TestWriteSeedCorpus(t *testing.T) {
	targets := map[string]map[string][]byte{
		"FuzzParseFrame":  {},
		"FuzzFrameReader": seedStreams(),
	}
	for name, frame := range seedFrames() {
		targets["FuzzParseFrame"][name] = frame[wire.PrefixLen:]
	}
	for target, seeds := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, data := range seeds {
			path := filepath.Join(dir, "seed-"+name)
			// %+q keeps the files ASCII.
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%+q)\n", data)
			if *updateCorpus {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("seed corpus file missing (run go test -run TestWriteSeedCorpus -update-corpus): %v", err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (run go test -run TestWriteSeedCorpus -update-corpus)", path)
			}
		}
	}
}
