package wire_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// validFrames returns one well-formed frame of each type, length prefix
// included.
func validFrames() map[string][]byte {
	return map[string][]byte{
		"request":  wire.AppendRequest(nil, &goldenRequestValue),
		"response": wire.AppendResponse(nil, &goldenResponseValue),
		"cancel":   wire.AppendCancel(nil, 42),
		"ping":     wire.AppendPing(nil, false, 42),
		"pong":     wire.AppendPing(nil, true, 42),
		"goaway":   wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown, Message: "bye"}),
	}
}

func TestRejectShortHeader(t *testing.T) {
	for _, frame := range [][]byte{nil, {}, {wire.Version}} {
		_, _, err := wire.ParseHeader(frame)
		mustMalformed(t, err, "ParseHeader of a short frame")
	}
}

func TestRejectVersion(t *testing.T) {
	for name, frame := range validFrames() {
		for _, v := range []byte{0, wire.Version + 1, 0x7f, 0xff} {
			f := bytes.Clone(frame[wire.PrefixLen:])
			f[0] = v
			_, _, err := wire.ParseHeader(f)
			mustMalformed(t, err, name+" with a wrong version")
		}
	}
}

func TestRejectType(t *testing.T) {
	for _, typ := range []byte{0, 8, 9, 0x80, 0xff} {
		f := bytes.Clone(wire.AppendPing(nil, false, 1)[wire.PrefixLen:])
		f[1] = typ
		_, _, err := wire.ParseHeader(f)
		mustMalformed(t, err, "unknown type")
	}
}

func TestRejectKind(t *testing.T) {
	for _, k := range []wire.Kind{0, wire.KindUnary + 1, 0x80, 0xff} {
		r := wire.Request{Kind: k, ID: 1, Handler: "h"}
		mustMalformed(t, wire.CheckRequest(&r, wire.Limits{}), "CheckRequest of an unknown kind")
		_, err := wire.ParseRequest(body(t, wire.AppendRequest(nil, &r), wire.TypeRequest), wire.Limits{})
		mustMalformed(t, err, "ParseRequest of an unknown kind")
	}
}

func TestRejectStatus(t *testing.T) {
	for _, s := range []wire.Status{wire.StatusUnauthenticated + 1, 0x80, 0xff} {
		r := wire.Response{ID: 1, Status: s}
		_, err := wire.ParseResponse(body(t, wire.AppendResponse(nil, &r), wire.TypeResponse))
		mustMalformed(t, err, "ParseResponse of an unknown status")

		g := wire.GoAway{Status: s, Message: "m"}
		_, err = wire.ParseGoAway(body(t, wire.AppendGoAway(nil, g), wire.TypeGoAway))
		mustMalformed(t, err, "ParseGoAway of an unknown status")
	}
}

// TestTruncated cuts valid frames at every byte offset. A cut before the
// end of the fixed and counted fields must be refused as malformed; a cut
// inside a request or response payload leaves a valid, shorter frame,
// because the payload is "the rest of the frame".
func TestTruncated(t *testing.T) {
	payload := []byte("payload bytes")
	tests := []struct {
		name    string
		frame   []byte
		payload []byte // nil for frames without a trailing payload
	}{
		{"request bare", wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, ID: 1, Handler: "h"}), nil},
		{"request full", wire.AppendRequest(nil, &wire.Request{
			Kind: wire.KindUnary, ID: 0x0102030405060708, Timeout: time.Second, Handler: "kv.get",
			Headers: map[string]string{"trace": "abc", "tenant": "blue"}, Payload: payload,
		}), payload},
		{"response bare", wire.AppendResponse(nil, &wire.Response{ID: 1}), nil},
		{"response full", wire.AppendResponse(nil, &wire.Response{
			ID: 9, Status: wire.StatusHandlerError, Error: "it broke", Payload: payload,
		}), payload},
		{"cancel", wire.AppendCancel(nil, math.MaxUint64), nil},
		{"ping", wire.AppendPing(nil, false, math.MaxUint64), nil},
		{"pong", wire.AppendPing(nil, true, math.MaxUint64), nil},
		{"goaway", wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown, Message: "draining"}), nil},
		{"goaway empty", wire.AppendGoAway(nil, wire.GoAway{}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole := tt.frame[wire.PrefixLen:]
			fixed := len(whole) - len(tt.payload)
			for i := range len(whole) {
				// Capacity equal to length: a decoder that reslices past
				// the end panics here instead of reading stale bytes.
				cut := bytes.Clone(whole[:i])[:i:i]
				v, err := parseAny(cut, wire.Limits{})
				if i < fixed {
					if err == nil {
						t.Fatalf("cut at %d of %d: decoded %+v, want ErrMalformed", i, len(whole), v)
					}
					mustMalformed(t, err, "truncated frame")
					continue
				}
				if err != nil {
					t.Fatalf("cut at %d inside the payload: %v", i, err)
				}
				var got []byte
				switch v := v.(type) {
				case wire.Request:
					got = v.Payload
				case wire.Response:
					got = v.Payload
				}
				if want := tt.payload[:i-fixed]; !bytes.Equal(got, want) {
					t.Fatalf("cut at %d: payload %q, want %q", i, got, want)
				}
			}
		})
	}
}

// TestTrailingBytes checks that the fixed-size control frames refuse extra
// bytes instead of ignoring them.
func TestTrailingBytes(t *testing.T) {
	for name, frame := range validFrames() {
		if name == "request" || name == "response" {
			continue // their payload is the rest of the frame
		}
		long := append(bytes.Clone(frame[wire.PrefixLen:]), 0)
		_, err := parseAny(long, wire.Limits{})
		mustMalformed(t, err, name+" with a trailing byte")
	}
}

func TestRejectHeaderCount(t *testing.T) {
	parse := func(h map[string]string, l wire.Limits) error {
		r := wire.Request{Kind: wire.KindUnary, ID: 1, Handler: "h", Headers: h}
		_, err := wire.ParseRequest(body(t, wire.AppendRequest(nil, &r), wire.TypeRequest), l)
		return err
	}
	small := wire.Limits{MaxHeaders: 2}
	if err := parse(manyHeaders(2), small); err != nil {
		t.Errorf("2 headers, limit 2: %v", err)
	}
	mustMalformed(t, parse(manyHeaders(3), small), "3 headers, limit 2")
	mustMalformed(t, parse(manyHeaders(wire.DefaultMaxHeaders+1), wire.Limits{}), "one header over the default limit")

	// A count that the body cannot back.
	b := rawRequestBody(wire.KindUnary, 1, 0, "h", nil, "")
	binary.BigEndian.PutUint16(b[len(b)-2:], 0xffff)
	_, err := wire.ParseRequest(b, wire.Limits{MaxHeaders: 0xffff})
	mustMalformed(t, err, "65535 headers announced, none sent")
}

func TestRejectHeaderBytes(t *testing.T) {
	l := wire.Limits{MaxHeaderBytes: 8}
	tests := []struct {
		name string
		hdrs []rawHeader
		ok   bool
	}{
		{"at the limit", []rawHeader{{"abcd", "efgh"}}, true},
		{"split at the limit", []rawHeader{{"ab", "cd"}, {"ef", "gh"}}, true},
		{"one byte over in the value", []rawHeader{{"abcd", "efghi"}}, false},
		{"one byte over in the key", []rawHeader{{"abcde", "fghi"}}, false},
		{"over across headers", []rawHeader{{"ab", "cd"}, {"ef", "gh"}, {"i", ""}}, false},
		{"one value over on its own", []rawHeader{{"", "123456789"}}, false},
	}
	for _, tt := range tests {
		b := rawRequestBody(wire.KindUnary, 1, 0, "h", tt.hdrs, "")
		_, err := wire.ParseRequest(b, l)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		mustMalformed(t, err, tt.name)
	}

	// The default limit, one byte over.
	big := map[string]string{"k": strings.Repeat("v", wire.DefaultMaxHeaderBytes)}
	r := wire.Request{Kind: wire.KindUnary, ID: 1, Handler: "h", Headers: big}
	_, err := wire.ParseRequest(body(t, wire.AppendRequest(nil, &r), wire.TypeRequest), wire.Limits{})
	mustMalformed(t, err, "headers one byte over the default limit")

	// Lengths that announce far more than the frame holds.
	b := rawRequestBody(wire.KindUnary, 1, 0, "h", []rawHeader{{"k", "v"}}, "")
	binary.BigEndian.PutUint32(b[len(b)-5:], math.MaxUint32)
	_, err = wire.ParseRequest(b, wire.Limits{MaxHeaderBytes: math.MaxInt})
	mustMalformed(t, err, "value length of 4 GiB")
	b = rawRequestBody(wire.KindUnary, 1, 0, "h", []rawHeader{{"k", "v"}}, "")
	binary.BigEndian.PutUint16(b[len(b)-8:], math.MaxUint16)
	_, err = wire.ParseRequest(b, wire.Limits{MaxHeaderBytes: math.MaxInt})
	mustMalformed(t, err, "key length of 64 KiB")
}

func TestRejectDuplicateHeader(t *testing.T) {
	b := rawRequestBody(wire.KindUnary, 1, 0, "h", []rawHeader{{"k", "a"}, {"other", ""}, {"k", "b"}}, "")
	_, err := wire.ParseRequest(b, wire.Limits{})
	mustMalformed(t, err, "repeated header key")
}

func TestRejectHandlerName(t *testing.T) {
	r := wire.Request{Kind: wire.KindUnary, ID: 1, Handler: ""}
	mustMalformed(t, wire.CheckRequest(&r, wire.Limits{}), "CheckRequest of an empty name")
	_, err := wire.ParseRequest(body(t, wire.AppendRequest(nil, &r), wire.TypeRequest), wire.Limits{})
	mustMalformed(t, err, "ParseRequest of an empty name")

	r.Handler = strings.Repeat("n", wire.MaxHandlerName+1)
	mustMalformed(t, wire.CheckRequest(&r, wire.Limits{}), "CheckRequest of a 256-byte name")
}

func TestRejectTimeout(t *testing.T) {
	for _, ns := range []uint64{uint64(wire.MaxTimeout) + 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		b := rawRequestBody(wire.KindUnary, 1, ns, "h", nil, "")
		_, err := wire.ParseRequest(b, wire.Limits{})
		mustMalformed(t, err, "timeout beyond MaxTimeout")
	}
	b := rawRequestBody(wire.KindUnary, 1, uint64(wire.MaxTimeout), "h", nil, "")
	r, err := wire.ParseRequest(b, wire.Limits{})
	if err != nil {
		t.Fatalf("timeout of exactly MaxTimeout: %v", err)
	}
	if r.Timeout != wire.MaxTimeout {
		t.Errorf("timeout %v, want %v", r.Timeout, wire.MaxTimeout)
	}
}

func TestRejectErrorLength(t *testing.T) {
	b := body(t, wire.AppendResponse(nil, &wire.Response{ID: 1, Error: "e"}), wire.TypeResponse)
	binary.BigEndian.PutUint32(b[9:], math.MaxUint32)
	_, err := wire.ParseResponse(b)
	mustMalformed(t, err, "response error length of 4 GiB")

	b = body(t, wire.AppendGoAway(nil, wire.GoAway{Message: "m"}), wire.TypeGoAway)
	binary.BigEndian.PutUint32(b[1:], math.MaxUint32)
	_, err = wire.ParseGoAway(b)
	mustMalformed(t, err, "goaway message length of 4 GiB")
}

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name string
		req  wire.Request
		l    wire.Limits
		ok   bool
	}{
		{"valid", wire.Request{Kind: wire.KindUnary, Handler: "h"}, wire.Limits{}, true},
		{"negative timeout is fine", wire.Request{Kind: wire.KindUnary, Handler: "h", Timeout: -1}, wire.Limits{}, true},
		{"huge timeout is fine", wire.Request{Kind: wire.KindUnary, Handler: "h", Timeout: math.MaxInt64}, wire.Limits{}, true},
		{"kind zero", wire.Request{Handler: "h"}, wire.Limits{}, false},
		{"empty name", wire.Request{Kind: wire.KindAMSend}, wire.Limits{}, false},
		{"name at the limit", wire.Request{Kind: wire.KindAMSend, Handler: strings.Repeat("n", 255)}, wire.Limits{}, true},
		{"name over the limit", wire.Request{Kind: wire.KindAMSend, Handler: strings.Repeat("n", 256)}, wire.Limits{}, false},
		{"headers at the count limit", wire.Request{Kind: wire.KindUnary, Handler: "h", Headers: manyHeaders(3)},
			wire.Limits{MaxHeaders: 3}, true},
		{"headers over the count limit", wire.Request{Kind: wire.KindUnary, Handler: "h", Headers: manyHeaders(4)},
			wire.Limits{MaxHeaders: 3}, false},
		{"headers at the byte limit", wire.Request{Kind: wire.KindUnary, Handler: "h", Headers: map[string]string{"ab": "cd"}},
			wire.Limits{MaxHeaderBytes: 4}, true},
		{"headers over the byte limit", wire.Request{Kind: wire.KindUnary, Handler: "h", Headers: map[string]string{"ab": "cde"}},
			wire.Limits{MaxHeaderBytes: 4}, false},
		{"key longer than its length field", wire.Request{Kind: wire.KindUnary, Handler: "h",
			Headers: map[string]string{strings.Repeat("k", 0x10000): ""}}, wire.Limits{MaxHeaderBytes: 1 << 20}, false},
	}
	for _, tt := range tests {
		err := wire.CheckRequest(&tt.req, tt.l)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		mustMalformed(t, err, tt.name)
	}
}

// TestCheckedRequestsParse checks that CheckRequest and ParseRequest agree:
// what the sender accepts under some limits, a receiver with the same limits
// accepts too.
func TestCheckedRequestsParse(t *testing.T) {
	l := wire.Limits{MaxHeaders: 3, MaxHeaderBytes: 10}
	reqs := []wire.Request{
		{Kind: wire.KindUnary, ID: 1, Handler: "h", Headers: map[string]string{"key": "value"}},
		{Kind: wire.KindUnary, ID: 1, Handler: "h", Headers: map[string]string{"a": "b", "c": "d", "e": "fghij"}},
		{Kind: wire.KindAMSync, ID: 1, Handler: strings.Repeat("x", 255), Timeout: math.MaxInt64},
	}
	for _, r := range reqs {
		if err := wire.CheckRequest(&r, l); err != nil {
			t.Fatalf("CheckRequest(%+v): %v", r, err)
		}
		if _, err := wire.ParseRequest(body(t, wire.AppendRequest(nil, &r), wire.TypeRequest), l); err != nil {
			t.Errorf("ParseRequest of a checked request: %v", err)
		}
	}
}
