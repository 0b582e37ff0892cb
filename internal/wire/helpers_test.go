package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// diffRequest describes how got differs from want, or returns "" when they
// carry the same fields. A nil and an empty Headers or Payload are the same
// thing on the wire, so they compare equal.
func diffRequest(got, want wire.Request) string {
	switch {
	case got.Kind != want.Kind:
		return fmt.Sprintf("Kind %v, want %v", got.Kind, want.Kind)
	case got.ID != want.ID:
		return fmt.Sprintf("ID %d, want %d", got.ID, want.ID)
	case got.Timeout != want.Timeout:
		return fmt.Sprintf("Timeout %v, want %v", got.Timeout, want.Timeout)
	case got.Handler != want.Handler:
		return fmt.Sprintf("Handler %q, want %q", got.Handler, want.Handler)
	case !maps.Equal(got.Headers, want.Headers):
		return fmt.Sprintf("Headers %q, want %q", got.Headers, want.Headers)
	case !bytes.Equal(got.Payload, want.Payload):
		return fmt.Sprintf("Payload of %d bytes %.32q, want %d bytes %.32q",
			len(got.Payload), got.Payload, len(want.Payload), want.Payload)
	}
	return ""
}

// diffResponse is diffRequest for responses.
func diffResponse(got, want wire.Response) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("ID %d, want %d", got.ID, want.ID)
	case got.Status != want.Status:
		return fmt.Sprintf("Status %d, want %d", got.Status, want.Status)
	case got.Error != want.Error:
		return fmt.Sprintf("Error %q, want %q", got.Error, want.Error)
	case !bytes.Equal(got.Payload, want.Payload):
		return fmt.Sprintf("Payload of %d bytes %.32q, want %d bytes %.32q",
			len(got.Payload), got.Payload, len(want.Payload), want.Payload)
	}
	return ""
}

// body checks the envelope of a whole encoded frame (length prefix, version,
// type) and returns its body.
func body(t testing.TB, frame []byte, want wire.Type) []byte {
	t.Helper()
	if len(frame) < wire.HeaderLen {
		t.Fatalf("frame of %d bytes is shorter than its header", len(frame))
	}
	if n := wire.FrameLen(frame); n != len(frame)-wire.PrefixLen {
		t.Fatalf("length prefix %d, want %d", n, len(frame)-wire.PrefixLen)
	}
	typ, b, err := wire.ParseHeader(frame[wire.PrefixLen:])
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	if typ != want {
		t.Fatalf("type %v, want %v", typ, want)
	}
	return b
}

// parseAny decodes a frame (without its length prefix) of any type, the way
// a receiver dispatches on ParseHeader. It returns the decoded value.
func parseAny(frame []byte, l wire.Limits) (any, error) {
	typ, b, err := wire.ParseHeader(frame)
	if err != nil {
		return nil, err
	}
	switch typ {
	case wire.TypeRequest:
		return wire.ParseRequest(b, l)
	case wire.TypeResponse:
		return wire.ParseResponse(b)
	case wire.TypeCancel:
		return wire.ParseCancel(b)
	case wire.TypePing, wire.TypePong:
		return wire.ParsePing(b)
	case wire.TypeGoAway:
		return wire.ParseGoAway(b)
	}
	return nil, fmt.Errorf("ParseHeader returned type %v without an error", typ)
}

// mustMalformed fails t unless err wraps ErrMalformed.
func mustMalformed(t testing.TB, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want ErrMalformed", what)
	}
	if !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("%s: %v does not wrap ErrMalformed", what, err)
	}
}

// rawHeader is one header as written on the wire, for building request
// bodies that AppendRequest cannot produce (a repeated key, a lying length).
type rawHeader struct {
	key, val string
}

// rawRequestBody lays out a request body field by field, without any of
// AppendRequest's care.
func rawRequestBody(kind wire.Kind, id, timeout uint64, name string, hdrs []rawHeader, payload string) []byte {
	var b []byte
	b = append(b, byte(kind))
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint64(b, timeout)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(hdrs)))
	for _, h := range hdrs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(h.key)))
		b = append(b, h.key...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(h.val)))
		b = append(b, h.val...)
	}
	return append(b, payload...)
}
