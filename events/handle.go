package events

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/velo-messenger/velo/peer"
)

// HandleSize is the length of a handle's binary form: the owner's 16-byte
// ID, then the index and the generation as big-endian uint32.
const HandleSize = 16 + 4 + 4

// Handle names one event across every instance. It is a small comparable
// value: copy it, compare it with ==, use it as a map key, put it in a
// payload (it implements encoding.BinaryMarshaler and TextMarshaler, so
// MessagePack and JSON carry it as they are).
//
// Index picks a slot in the owner's table and Generation tells apart the
// successive events that reuse that slot, so a stale handle is recognised
// as such instead of observing a newer event. Generation 0 is never issued:
// the zero Handle names no event.
type Handle struct {
	Owner      peer.ID // the instance that created the event
	Index      uint32  // slot in the owner's table
	Generation uint32  // use count of that slot when the event was created
}

// IsZero reports whether h is the zero Handle, which names no event.
func (h Handle) IsZero() bool { return h == Handle{} }

// String returns the text form "owner:index:generation", the owner in the
// 32-digit hexadecimal form of peer.ID and the numbers in decimal.
func (h Handle) String() string {
	b := make([]byte, 0, 32+2+20)
	return string(h.appendText(b))
}

func (h Handle) appendText(b []byte) []byte {
	b = append(b, h.Owner.String()...)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(h.Index), 10)
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(h.Generation), 10)
}

// ParseHandle reads the text form written by String.
func ParseHandle(s string) (Handle, error) {
	owner, rest, ok1 := strings.Cut(s, ":")
	index, gen, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return Handle{}, malformed("handle %q: want owner:index:generation", s)
	}
	id, err := peer.Parse(owner)
	if err != nil {
		return Handle{}, malformed("handle %q: %v", s, err)
	}
	i, err := strconv.ParseUint(index, 10, 32)
	if err != nil {
		return Handle{}, malformed("handle %q: index: %v", s, err)
	}
	g, err := strconv.ParseUint(gen, 10, 32)
	if err != nil {
		return Handle{}, malformed("handle %q: generation: %v", s, err)
	}
	return Handle{Owner: id, Index: uint32(i), Generation: uint32(g)}, nil
}

// MarshalText implements encoding.TextMarshaler with the form of String.
func (h Handle) MarshalText() ([]byte, error) { return h.appendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Handle) UnmarshalText(b []byte) error {
	p, err := ParseHandle(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// AppendBinary implements encoding.BinaryAppender: it appends the
// HandleSize-byte binary form of h to b.
func (h Handle) AppendBinary(b []byte) ([]byte, error) { return appendHandle(b, h), nil }

// MarshalBinary implements encoding.BinaryMarshaler.
func (h Handle) MarshalBinary() ([]byte, error) {
	return appendHandle(make([]byte, 0, HandleSize), h), nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. b must be exactly
// HandleSize bytes long.
func (h *Handle) UnmarshalBinary(b []byte) error {
	if len(b) != HandleSize {
		return malformed("handle: %d bytes, want %d", len(b), HandleSize)
	}
	*h = readHandle(b)
	return nil
}

func appendHandle(b []byte, h Handle) []byte {
	b = append(b, h.Owner[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Index)
	return binary.BigEndian.AppendUint32(b, h.Generation)
}

// readHandle decodes the first HandleSize bytes of b; the caller checked
// the length.
func readHandle(b []byte) Handle {
	var h Handle
	copy(h.Owner[:], b[:16])
	h.Index = binary.BigEndian.Uint32(b[16:20])
	h.Generation = binary.BigEndian.Uint32(b[20:24])
	return h
}
