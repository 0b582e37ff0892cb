package wire_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// unhex decodes a hex literal laid out for people: "|" separates fields,
// "//" starts a comment that runs to the end of the line, and white space is
// ignored.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "//")
		clean.WriteString(strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(line))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("bad golden literal: %v", err)
	}
	return b
}

// The golden frames below were written by hand from docs/wire.md, field by
// field, not produced by the encoder. If one of these tests fails, the byte
// layout changed: that breaks every deployed peer and needs a new Version.

// goldenRequest is the worked example of docs/wire.md.
const goldenRequest = `
	00 00 00 24             // length 36
	02                      // version 2
	01                      // type request
	03                      // kind unary
	01 02 03 04 05 06 07 08 // id 0x0102030405060708
	00 00 00 00 59 68 2f 00 // timeout 1 500 000 000 ns
	04                      // name length 4
	65 63 68 6f             // "echo"
	00 01                   // 1 header
	00 01                   // key length 1
	6b                      // "k"
	00 00 00 01             // value length 1
	76                      // "v"
	68 69                   // payload "hi"
`

var goldenRequestValue = wire.Request{
	Kind:    wire.KindUnary,
	ID:      0x0102030405060708,
	Timeout: 1500 * time.Millisecond,
	Handler: "echo",
	Headers: map[string]string{"k": "v"},
	Payload: []byte("hi"),
}

const goldenResponse = `
	00 00 00 15             // length 21
	02                      // version 2
	02                      // type response
	00 00 00 00 00 00 00 2a // id 42
	02                      // status handler error
	00 00 00 04             // error length 4
	62 6f 6f 6d             // "boom"
	6f 6b                   // payload "ok"
`

var goldenResponseValue = wire.Response{
	ID:      42,
	Status:  wire.StatusHandlerError,
	Error:   "boom",
	Payload: []byte("ok"),
}

func TestGoldenRequest(t *testing.T) {
	want := unhex(t, goldenRequest)
	got := wire.AppendRequest(nil, &goldenRequestValue)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendRequest:\n got % x\nwant % x", got, want)
	}
	r, err := wire.ParseRequest(body(t, want, wire.TypeRequest), wire.Limits{})
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if d := diffRequest(r, goldenRequestValue); d != "" {
		t.Error(d)
	}
}

func TestGoldenResponse(t *testing.T) {
	want := unhex(t, goldenResponse)
	got := wire.AppendResponse(nil, &goldenResponseValue)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendResponse:\n got % x\nwant % x", got, want)
	}
	r, err := wire.ParseResponse(body(t, want, wire.TypeResponse))
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	if d := diffResponse(r, goldenResponseValue); d != "" {
		t.Error(d)
	}
}

// TestGoldenControl pins the small control frames the same way.
func TestGoldenControl(t *testing.T) {
	tests := []struct {
		name   string
		golden string
		got    []byte
	}{
		{"cancel", `00 00 00 0a | 02 | 03 | 00 00 00 00 00 00 00 2a`, wire.AppendCancel(nil, 42)},
		{"ping", `00 00 00 0a | 02 | 04 | 01 02 03 04 05 06 07 08`, wire.AppendPing(nil, false, 0x0102030405060708)},
		{"pong", `00 00 00 0a | 02 | 05 | 01 02 03 04 05 06 07 08`, wire.AppendPing(nil, true, 0x0102030405060708)},
		{"goaway", `00 00 00 0a | 02 | 06 | 0b | 00 00 00 03 | 62 79 65`,
			wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown, Message: "bye"})},
	}
	for _, tt := range tests {
		if want := unhex(t, tt.golden); !bytes.Equal(tt.got, want) {
			t.Errorf("%s:\n got % x\nwant % x", tt.name, tt.got, want)
		}
	}
}

// TestCodesNeverChange pins the numeric values of the wire enums. They are
// part of the format: a renumbering must fail here, not in production.
func TestCodesNeverChange(t *testing.T) {
	types := []struct {
		got  wire.Type
		want uint8
	}{
		{wire.TypeRequest, 1}, {wire.TypeResponse, 2}, {wire.TypeCancel, 3},
		{wire.TypePing, 4}, {wire.TypePong, 5}, {wire.TypeGoAway, 6},
	}
	for _, c := range types {
		if uint8(c.got) != c.want {
			t.Errorf("type %v = %d, want %d", c.got, c.got, c.want)
		}
	}
	kinds := []struct {
		got  wire.Kind
		want uint8
	}{{wire.KindAMSend, 1}, {wire.KindAMSync, 2}, {wire.KindUnary, 3}}
	for _, c := range kinds {
		if uint8(c.got) != c.want {
			t.Errorf("kind %v = %d, want %d", c.got, c.got, c.want)
		}
	}
	statuses := []wire.Status{
		wire.StatusOK, wire.StatusHandlerNotFound, wire.StatusHandlerError, wire.StatusHandlerPanic,
		wire.StatusBusy, wire.StatusDeadlineExceeded, wire.StatusCanceled, wire.StatusPeerUnknown,
		wire.StatusPeerLost, wire.StatusPayloadTooLarge, wire.StatusBadPayload, wire.StatusShuttingDown,
		wire.StatusHandlerStopped, wire.StatusBadRequest, wire.StatusInternal, wire.StatusOwnerLost,
		wire.StatusEventPoisoned, wire.StatusPermissionDenied, wire.StatusUnauthenticated,
	}
	for want, got := range statuses {
		if int(got) != want {
			t.Errorf("status #%d has value %d", want, got)
		}
	}
	if wire.Version != 2 {
		t.Errorf("Version = %d; a new version needs new golden frames", wire.Version)
	}
	if wire.PrefixLen != 4 || wire.HeaderLen != 6 {
		t.Errorf("PrefixLen %d, HeaderLen %d; want 4, 6", wire.PrefixLen, wire.HeaderLen)
	}
}

// TestDocExamples checks the hex dumps of docs/wire.md's worked example
// against the golden frames, so that the specification cannot drift from
// the code either.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "wire.md"))
	if err != nil {
		t.Fatalf("reading the specification: %v", err)
	}
	_, example, ok := strings.Cut(string(doc), "\n## Worked example\n")
	if !ok {
		t.Fatal(`docs/wire.md has no "## Worked example" section`)
	}
	// The fenced blocks of the section, in order: request, then response.
	var dumps []string
	for rest := example; ; {
		_, after, ok := strings.Cut(rest, "```\n")
		if !ok {
			break
		}
		block, after, ok := strings.Cut(after, "```\n")
		if !ok {
			t.Fatal("unterminated code block in the worked example")
		}
		dumps = append(dumps, block)
		rest = after
	}
	want := []string{goldenRequest, goldenResponse}
	if len(dumps) != len(want) {
		t.Fatalf("worked example has %d hex dumps, want %d", len(dumps), len(want))
	}
	for i, d := range dumps {
		if got, want := unhex(t, d), unhex(t, want[i]); !bytes.Equal(got, want) {
			t.Errorf("docs/wire.md dump %d:\n got % x\nwant % x", i+1, got, want)
		}
	}
}
