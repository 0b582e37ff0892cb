package events

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/velo-messenger/velo/peer"
)

// HandleSize is the length of a handle's binary form: the owner's 16-byte
// ID, the owner's epoch as a big-endian uint64, then the index and the
// generation as big-endian uint32.
const HandleSize = 16 + 8 + 4 + 4

// Handle names one event across every instance. It is a small comparable
// value: copy it, compare it with ==, use it as a map key, put it in a
// payload (it implements encoding.BinaryMarshaler and TextMarshaler, so
// MessagePack and JSON carry it as they are).
//
// Epoch names the incarnation of the owner that created the event: a
// random non-zero number each Manager draws when it is created. An owner
// that restarts under the same instance ID starts its slot table afresh,
// so Index and Generation repeat; the epoch does not, and the new
// incarnation refuses a handle of the old one (ErrOwnerRestarted) instead
// of taking it for its own event.
//
// Index picks a slot in the owner's table and Generation tells apart the
// successive events that reuse that slot, so a stale handle is recognised
// as such instead of observing a newer event. Epoch 0 and generation 0
// are never issued: the zero Handle names no event.
type Handle struct {
	Owner      peer.ID // the instance that created the event
	Epoch      uint64  // the owner's incarnation (its Manager) that created it
	Index      uint32  // slot in the owner's table
	Generation uint32  // use count of that slot when the event was created
}

// IsZero reports whether h is the zero Handle, which names no event.
func (h Handle) IsZero() bool { return h == Handle{} }

// epochDigits is the width of the epoch in the text form.
const epochDigits = 16

// String returns the text form "owner:epoch:index:generation", the owner
// in the 32-digit hexadecimal form of peer.ID, the epoch in 16 hexadecimal
// digits and the numbers in decimal.
func (h Handle) String() string {
	b := make([]byte, 0, 32+1+epochDigits+2+20)
	return string(h.appendText(b))
}

func (h Handle) appendText(b []byte) []byte {
	b = append(b, h.Owner.String()...)
	b = append(b, ':')
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], h.Epoch)
	b = hex.AppendEncode(b, e[:])
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(h.Index), 10)
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(h.Generation), 10)
}

// ParseHandle reads the text form written by String.
func ParseHandle(s string) (Handle, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return Handle{}, malformed("handle %q: want owner:epoch:index:generation", s)
	}
	id, err := peer.Parse(f[0])
	if err != nil {
		return Handle{}, malformed("handle %q: %v", s, err)
	}
	var e [8]byte
	if len(f[1]) != epochDigits {
		return Handle{}, malformed("handle %q: epoch: want %d hexadecimal digits", s, epochDigits)
	}
	if _, err := hex.Decode(e[:], []byte(f[1])); err != nil {
		return Handle{}, malformed("handle %q: epoch: %v", s, err)
	}
	i, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return Handle{}, malformed("handle %q: index: %v", s, err)
	}
	g, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return Handle{}, malformed("handle %q: generation: %v", s, err)
	}
	return Handle{Owner: id, Epoch: binary.BigEndian.Uint64(e[:]), Index: uint32(i), Generation: uint32(g)}, nil
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
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = binary.BigEndian.AppendUint32(b, h.Index)
	return binary.BigEndian.AppendUint32(b, h.Generation)
}

// readHandle decodes the first HandleSize bytes of b; the caller checked
// the length.
func readHandle(b []byte) Handle {
	var h Handle
	copy(h.Owner[:], b[:16])
	h.Epoch = binary.BigEndian.Uint64(b[16:24])
	h.Index = binary.BigEndian.Uint32(b[24:28])
	h.Generation = binary.BigEndian.Uint32(b[28:32])
	return h
}
