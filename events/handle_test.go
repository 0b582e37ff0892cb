package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/peer"
)

func sampleHandle() Handle {
	return Handle{
		Owner:      peer.ID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10},
		Epoch:      0x00c0ffee1234abcd, // leading zeros: the text form keeps 16 digits
		Index:      4242,
		Generation: 0xfffffffe,
	}
}

func TestHandleText(t *testing.T) {
	h := sampleHandle()
	const want = "0123456789abcdeffedcba9876543210:00c0ffee1234abcd:4242:4294967294"
	if got := h.String(); got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	p, err := ParseHandle(want)
	if err != nil || p != h {
		t.Fatalf("ParseHandle = %v, %v; want %v", p, err, h)
	}
	b, err := h.MarshalText()
	if err != nil || string(b) != want {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var u Handle
	if err := u.UnmarshalText(b); err != nil || u != h {
		t.Fatalf("UnmarshalText = %v, %v", u, err)
	}
	// The zero handle has a text form too, and round-trips.
	z, err := ParseHandle(Handle{}.String())
	if err != nil || !z.IsZero() {
		t.Fatalf("zero handle round trip: %v, %v", z, err)
	}
}

func TestParseHandleErrors(t *testing.T) {
	id := sampleHandle().Owner.String()
	const ep = "00c0ffee1234abcd"
	for _, s := range []string{
		"",
		id,
		id + ":1",
		id + ":1:2", // the form before handles carried an epoch
		id + ":" + ep,
		id + ":" + ep + ":1",
		id + ":" + ep + ":1:2:3",
		id + ":" + ep + ":-1:2",
		id + ":" + ep + ":1:x",
		id + ":" + ep + ":4294967296:1",
		id + ":" + ep + ":1:4294967296",
		id + ":c0ffee1234abcd:1:2",    // epoch too short
		id + ":000c0ffee1234abcd:1:2", // epoch too long
		id + ":00c0ffee1234abcg:1:2",  // epoch not hexadecimal
		id + ":+0c0ffee1234abcd:1:2",  // epoch with a sign
		"nothex:" + ep + ":1:1",
		strings.Repeat("0", 31) + ":" + ep + ":1:1",
	} {
		if _, err := ParseHandle(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHandle(%q) = %v, want ErrMalformed", s, err)
		}
	}
	var h Handle
	if err := h.UnmarshalText([]byte("bad")); !errors.Is(err, ErrMalformed) || !h.IsZero() {
		t.Errorf("UnmarshalText(bad) = %v, handle %v", err, h)
	}
}

func TestHandleBinary(t *testing.T) {
	h := sampleHandle()
	b, err := h.MarshalBinary()
	if err != nil || len(b) != HandleSize {
		t.Fatalf("MarshalBinary: %d bytes, %v", len(b), err)
	}
	want := append(h.Owner[:],
		0x00, 0xc0, 0xff, 0xee, 0x12, 0x34, 0xab, 0xcd, // epoch
		0x00, 0x00, 0x10, 0x92, // index
		0xff, 0xff, 0xff, 0xfe) // generation
	if !bytes.Equal(b, want) {
		t.Fatalf("MarshalBinary = %x, want %x", b, want)
	}
	prefix := []byte("prefix")
	a, err := h.AppendBinary(prefix)
	if err != nil || !bytes.Equal(a, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendBinary = %x, %v", a, err)
	}
	var u Handle
	if err := u.UnmarshalBinary(b); err != nil || u != h {
		t.Fatalf("UnmarshalBinary = %v, %v", u, err)
	}
	for _, n := range []int{0, 1, HandleSize - 1, HandleSize + 1} {
		if err := u.UnmarshalBinary(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("UnmarshalBinary(%d bytes) = %v, want ErrMalformed", n, err)
		}
	}
}

// A handle travels inside MessagePack payloads through its BinaryMarshaler:
// as a value, behind a pointer, in a slice and as a map key.
func TestHandleMsgpack(t *testing.T) {
	type job struct {
		Done  Handle            `msgpack:"done"`
		Maybe *Handle           `msgpack:"maybe"`
		More  []Handle          `msgpack:"more"`
		Names map[Handle]string `msgpack:"names"`
	}
	h := sampleHandle()
	h2 := Handle{Owner: peer.NewID(), Epoch: 1, Index: 1, Generation: 1}
	in := job{Done: h, Maybe: &h2, More: []Handle{h2, h}, Names: map[Handle]string{h: "x"}}
	b, err := msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out job
	if err := msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Done != h || out.Maybe == nil || *out.Maybe != h2 ||
		len(out.More) != 2 || out.More[0] != h2 || out.More[1] != h || out.Names[h] != "x" {
		t.Fatalf("msgpack round trip: %+v", out)
	}
	// It is encoded as a 32-byte bin, not as a struct of four fields.
	raw, err := msgpack.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := h.MarshalBinary(); !bytes.Equal(raw, append([]byte{0xc4, HandleSize}, want...)) {
		t.Fatalf("msgpack form %x", raw)
	}
}

func TestHandleJSON(t *testing.T) {
	h := sampleHandle()
	b, err := json.Marshal(map[string]Handle{"h": h})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"h":"` + h.String() + `"}`; string(b) != want {
		t.Fatalf("json = %s, want %s", b, want)
	}
	var out map[string]Handle
	if err := json.Unmarshal(b, &out); err != nil || out["h"] != h {
		t.Fatalf("json round trip: %v, %v", out, err)
	}
}
