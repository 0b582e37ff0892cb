package wire_test

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/velo-messenger/velo/internal/wire"
)

// seq returns n bytes that run through every byte value, so that a payload
// shifted or cut by one byte does not compare equal by accident.
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// manyHeaders returns n distinct headers.
func manyHeaders(n int) map[string]string {
	h := make(map[string]string, n)
	for i := range n {
		h[fmt.Sprintf("key-%03d", i)] = fmt.Sprintf("value %d", i)
	}
	return h
}

func TestRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		req  wire.Request
		// want is what the peer decodes, when it differs from req because
		// the encoder normalizes a field.
		want *wire.Request
	}{
		{name: "am-send bare", req: wire.Request{Kind: wire.KindAMSend, ID: 1, Handler: "h"}},
		{name: "am-sync bare", req: wire.Request{Kind: wire.KindAMSync, ID: 2, Handler: "h"}},
		{name: "unary bare", req: wire.Request{Kind: wire.KindUnary, ID: 3, Handler: "h"}},
		{name: "am-send all fields", req: wire.Request{
			Kind: wire.KindAMSend, ID: 10, Timeout: time.Second, Handler: "log.append",
			Headers: map[string]string{"trace": "abc"}, Payload: []byte("line"),
		}},
		{name: "am-sync all fields", req: wire.Request{
			Kind: wire.KindAMSync, ID: 11, Timeout: 250 * time.Millisecond, Handler: "kv.put",
			Headers: map[string]string{"a": "1", "b": "2"}, Payload: seq(32),
		}},
		{name: "unary all fields", req: wire.Request{
			Kind: wire.KindUnary, ID: 12, Timeout: 3 * time.Second, Handler: "kv.get",
			Headers: map[string]string{"trace": "t-1", "tenant": "blue", "x": ""}, Payload: []byte("key"),
		}},
		{name: "one header", req: wire.Request{
			Kind: wire.KindUnary, ID: 20, Handler: "h", Headers: map[string]string{"k": "v"},
		}},
		{name: "empty header key and value", req: wire.Request{
			Kind: wire.KindUnary, ID: 21, Handler: "h", Headers: map[string]string{"": ""},
		}},
		{name: "binary header value", req: wire.Request{
			Kind: wire.KindUnary, ID: 22, Handler: "h", Headers: map[string]string{"bin": string(seq(300))},
		}},
		{name: "as many headers as allowed", req: wire.Request{
			Kind: wire.KindUnary, ID: 23, Handler: "h", Headers: manyHeaders(wire.DefaultMaxHeaders),
		}},
		{name: "header bytes at the limit", req: wire.Request{
			Kind: wire.KindUnary, ID: 24, Handler: "h",
			Headers: map[string]string{"big": strings.Repeat("v", wire.DefaultMaxHeaderBytes-len("big"))},
		}},
		{name: "empty headers map decodes as none", req: wire.Request{
			Kind: wire.KindUnary, ID: 25, Handler: "h", Headers: map[string]string{},
		}},
		{name: "deadline 1ns", req: wire.Request{Kind: wire.KindUnary, ID: 30, Handler: "h", Timeout: 1}},
		{name: "deadline 1.5s", req: wire.Request{Kind: wire.KindUnary, ID: 31, Handler: "h", Timeout: 1500 * time.Millisecond}},
		{name: "deadline at the maximum", req: wire.Request{Kind: wire.KindUnary, ID: 32, Handler: "h", Timeout: wire.MaxTimeout}},
		{
			name: "deadline beyond the maximum is clamped",
			req:  wire.Request{Kind: wire.KindUnary, ID: 33, Handler: "h", Timeout: wire.MaxTimeout + 1},
			want: &wire.Request{Kind: wire.KindUnary, ID: 33, Handler: "h", Timeout: wire.MaxTimeout},
		},
		{
			name: "largest duration is clamped",
			req:  wire.Request{Kind: wire.KindUnary, ID: 34, Handler: "h", Timeout: math.MaxInt64},
			want: &wire.Request{Kind: wire.KindUnary, ID: 34, Handler: "h", Timeout: wire.MaxTimeout},
		},
		{
			name: "expired deadline becomes 1ns, not none",
			req:  wire.Request{Kind: wire.KindUnary, ID: 35, Handler: "h", Timeout: -time.Second},
			want: &wire.Request{Kind: wire.KindUnary, ID: 35, Handler: "h", Timeout: 1},
		},
		{name: "nil payload", req: wire.Request{Kind: wire.KindUnary, ID: 40, Handler: "h", Payload: nil}},
		{name: "empty payload", req: wire.Request{Kind: wire.KindUnary, ID: 41, Handler: "h", Payload: []byte{}}},
		{name: "32-byte payload", req: wire.Request{Kind: wire.KindUnary, ID: 42, Handler: "h", Payload: seq(32)}},
		{name: "1 MiB payload", req: wire.Request{Kind: wire.KindAMSend, ID: 43, Handler: "h", Payload: seq(1 << 20)}},
		{name: "id zero", req: wire.Request{Kind: wire.KindUnary, ID: 0, Handler: "h"}},
		{name: "largest id", req: wire.Request{Kind: wire.KindUnary, ID: math.MaxUint64, Handler: "h"}},
		{name: "longest handler name", req: wire.Request{Kind: wire.KindUnary, ID: 50, Handler: strings.Repeat("n", wire.MaxHandlerName)}},
		{name: "utf-8 handler name", req: wire.Request{Kind: wire.KindUnary, ID: 51, Handler: "grüße.日本"}},
		{name: "reserved handler name", req: wire.Request{Kind: wire.KindUnary, ID: 52, Handler: "_hello", Payload: []byte{0x80}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := wire.CheckRequest(&tt.req, wire.Limits{}); err != nil {
				t.Fatalf("CheckRequest: %v", err)
			}
			frame := wire.AppendRequest(nil, &tt.req)
			if n := wire.RequestLen(&tt.req); n != len(frame) {
				t.Errorf("RequestLen %d, frame of %d bytes", n, len(frame))
			}
			got, err := wire.ParseRequest(body(t, frame, wire.TypeRequest), wire.Limits{})
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			want := tt.req
			if tt.want != nil {
				want = *tt.want
			}
			if d := diffRequest(got, want); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		resp wire.Response
	}{
		{name: "ok bare", resp: wire.Response{ID: 1, Status: wire.StatusOK}},
		{name: "ok with payload", resp: wire.Response{ID: 2, Status: wire.StatusOK, Payload: []byte("result")}},
		{name: "ok with empty payload", resp: wire.Response{ID: 3, Status: wire.StatusOK, Payload: []byte{}}},
		{name: "ok with 1 MiB payload", resp: wire.Response{ID: 4, Status: wire.StatusOK, Payload: seq(1 << 20)}},
		{name: "error text", resp: wire.Response{ID: 5, Status: wire.StatusHandlerError, Error: "disk full"}},
		{name: "error text and payload", resp: wire.Response{ID: 6, Status: wire.StatusHandlerError, Error: "partial", Payload: seq(17)}},
		{name: "long utf-8 error text", resp: wire.Response{ID: 7, Status: wire.StatusHandlerPanic, Error: strings.Repeat("pánico ", 5000)}},
		{name: "id zero", resp: wire.Response{ID: 0, Status: wire.StatusOK}},
		{name: "largest id", resp: wire.Response{ID: math.MaxUint64, Status: wire.StatusInternal, Error: "x"}},
	}
	// Every status code the format defines, with and without text.
	for s := wire.StatusOK; s <= wire.StatusEventPoisoned; s++ {
		tests = append(tests,
			struct {
				name string
				resp wire.Response
			}{fmt.Sprintf("status %d bare", s), wire.Response{ID: 100 + uint64(s), Status: s}},
			struct {
				name string
				resp wire.Response
			}{fmt.Sprintf("status %d with text and payload", s), wire.Response{
				ID: 200 + uint64(s), Status: s, Error: fmt.Sprintf("status %d", s), Payload: []byte{byte(s)},
			}},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := wire.AppendResponse(nil, &tt.resp)
			if n := wire.ResponseLen(&tt.resp); n != len(frame) {
				t.Errorf("ResponseLen %d, frame of %d bytes", n, len(frame))
			}
			got, err := wire.ParseResponse(body(t, frame, wire.TypeResponse))
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if d := diffResponse(got, tt.resp); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestCancelRoundTrip(t *testing.T) {
	for _, id := range []uint64{0, 1, 0x0102030405060708, math.MaxUint64} {
		frame := wire.AppendCancel(nil, id)
		if len(frame) != wire.HeaderLen+8 {
			t.Errorf("cancel frame of %d bytes, want %d", len(frame), wire.HeaderLen+8)
		}
		got, err := wire.ParseCancel(body(t, frame, wire.TypeCancel))
		if err != nil {
			t.Fatalf("ParseCancel(%d): %v", id, err)
		}
		if got != id {
			t.Errorf("cancel id %d, want %d", got, id)
		}
	}
}

func TestPingPongRoundTrip(t *testing.T) {
	for _, pong := range []bool{false, true} {
		want := wire.TypePing
		if pong {
			want = wire.TypePong
		}
		for _, data := range []uint64{0, 1, 0xdeadbeefcafef00d, math.MaxUint64} {
			frame := wire.AppendPing(nil, pong, data)
			if len(frame) != wire.HeaderLen+8 {
				t.Errorf("%v frame of %d bytes, want %d", want, len(frame), wire.HeaderLen+8)
			}
			got, err := wire.ParsePing(body(t, frame, want))
			if err != nil {
				t.Fatalf("ParsePing(%v, %#x): %v", want, data, err)
			}
			if got != data {
				t.Errorf("%v data %#x, want %#x", want, got, data)
			}
		}
	}
}

func TestGoAwayRoundTrip(t *testing.T) {
	tests := []wire.GoAway{
		{Status: wire.StatusOK},
		{Status: wire.StatusShuttingDown, Message: "node draining"},
		{Status: wire.StatusBadRequest, Message: "malformed frame: version 9"},
		{Status: wire.StatusInternal, Message: strings.Repeat("é", 10000)},
	}
	for s := wire.StatusOK; s <= wire.StatusEventPoisoned; s++ {
		tests = append(tests, wire.GoAway{Status: s, Message: fmt.Sprintf("status %d", s)})
	}
	for _, g := range tests {
		frame := wire.AppendGoAway(nil, g)
		if n := wire.HeaderLen + 1 + 4 + len(g.Message); len(frame) != n {
			t.Errorf("goaway frame of %d bytes, want %d", len(frame), n)
		}
		got, err := wire.ParseGoAway(body(t, frame, wire.TypeGoAway))
		if err != nil {
			t.Fatalf("ParseGoAway(%+v): %v", g, err)
		}
		if got != g {
			t.Errorf("goaway %+v, want %+v", got, g)
		}
	}
}

// TestAppendAfterExistingBytes checks that every encoder appends: what was
// in the buffer stays, and the length prefix covers only the new frame.
func TestAppendAfterExistingBytes(t *testing.T) {
	req := &wire.Request{Kind: wire.KindUnary, ID: 7, Timeout: time.Second, Handler: "h",
		Headers: map[string]string{"k": "v"}, Payload: []byte("p")}
	resp := &wire.Response{ID: 7, Status: wire.StatusHandlerError, Error: "e", Payload: []byte("p")}
	encoders := map[string]func([]byte) []byte{
		"request":  func(b []byte) []byte { return wire.AppendRequest(b, req) },
		"response": func(b []byte) []byte { return wire.AppendResponse(b, resp) },
		"cancel":   func(b []byte) []byte { return wire.AppendCancel(b, 7) },
		"ping":     func(b []byte) []byte { return wire.AppendPing(b, false, 7) },
		"pong":     func(b []byte) []byte { return wire.AppendPing(b, true, 7) },
		"goaway":   func(b []byte) []byte { return wire.AppendGoAway(b, wire.GoAway{Status: 11, Message: "m"}) },
	}
	for name, enc := range encoders {
		alone := enc(nil)
		prefix := []byte("already here")
		// Capacity to spare, so that a wrong offset would write into the
		// existing bytes instead of reallocating them away.
		buf := append(make([]byte, 0, 512), prefix...)
		buf = enc(buf)
		if !bytes.Equal(buf[:len(prefix)], prefix) {
			t.Errorf("%s: existing bytes became %q", name, buf[:len(prefix)])
		}
		if !bytes.Equal(buf[len(prefix):], alone) {
			t.Errorf("%s: appended % x, want % x", name, buf[len(prefix):], alone)
		}
	}
}

// TestParseCopiesStrings checks the aliasing contract: Handler, header and
// error strings survive the reuse of the input buffer, Payload aliases it.
func TestParseCopiesStrings(t *testing.T) {
	req := &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: "name",
		Headers: map[string]string{"key": "val"}, Payload: []byte("pay")}
	frame := wire.AppendRequest(nil, req)
	r, err := wire.ParseRequest(body(t, frame, wire.TypeRequest), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	clear(frame)
	if r.Handler != "name" || r.Headers["key"] != "val" {
		t.Errorf("strings changed with the buffer: %q %q", r.Handler, r.Headers)
	}
	if !bytes.Equal(r.Payload, []byte{0, 0, 0}) {
		t.Errorf("payload %q does not alias the buffer", r.Payload)
	}

	resp := &wire.Response{ID: 1, Status: wire.StatusHandlerError, Error: "err", Payload: []byte("pay")}
	frame = wire.AppendResponse(nil, resp)
	p, err := wire.ParseResponse(body(t, frame, wire.TypeResponse))
	if err != nil {
		t.Fatal(err)
	}
	clear(frame)
	if p.Error != "err" {
		t.Errorf("error text changed with the buffer: %q", p.Error)
	}
	if !bytes.Equal(p.Payload, []byte{0, 0, 0}) {
		t.Errorf("payload %q does not alias the buffer", p.Payload)
	}
}

func TestStrings(t *testing.T) {
	for typ, want := range map[wire.Type]string{
		wire.TypeRequest: "request", wire.TypeResponse: "response", wire.TypeCancel: "cancel",
		wire.TypePing: "ping", wire.TypePong: "pong", wire.TypeGoAway: "goaway", wire.TypeChunk: "chunk", 0: "unknown", 8: "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", typ, got, want)
		}
	}
	for kind, want := range map[wire.Kind]string{
		wire.KindAMSend: "am-send", wire.KindAMSync: "am-sync", wire.KindUnary: "unary", 0: "unknown", 4: "unknown",
	} {
		if got := kind.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", kind, got, want)
		}
	}
	for kind, want := range map[wire.Kind]bool{
		wire.KindAMSend: false, wire.KindAMSync: true, wire.KindUnary: true, 0: false, 4: false,
	} {
		if got := kind.WantsResponse(); got != want {
			t.Errorf("Kind(%d).WantsResponse() = %v, want %v", kind, got, want)
		}
	}
}

// TestParseInternsKnownNames checks Limits.Intern: a known handler name
// comes back as the interner's string, with no allocation for it; an
// unknown one is copied and survives the reuse of the buffer.
func TestParseInternsKnownNames(t *testing.T) {
	const known = "known-handler"
	l := wire.Limits{Intern: func(b []byte) (string, bool) {
		if string(b) == known {
			return known, true
		}
		return "", false
	}}
	frame := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, Handler: known, Payload: []byte("x")})
	b := body(t, frame, wire.TypeRequest)
	r, err := wire.ParseRequest(b, l)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(r.Handler) != unsafe.StringData(known) {
		t.Error("a known name was not interned")
	}
	if n := testing.AllocsPerRun(100, func() { wire.ParseRequest(b, l) }); n != 0 {
		t.Errorf("ParseRequest of a known handler allocates %v times, want 0", n)
	}

	frame = wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, Handler: "other", Payload: []byte("x")})
	r, err = wire.ParseRequest(body(t, frame, wire.TypeRequest), l)
	if err != nil {
		t.Fatal(err)
	}
	clear(frame)
	if r.Handler != "other" {
		t.Errorf("unknown name %q changed with the buffer", r.Handler)
	}
}
