package wire

import (
	"encoding/binary"
	"math"
)

// begin appends a frame header with a zero length and returns the buffer and
// the offset of the length field, to be filled in by finish.
func begin(b []byte, t Type) ([]byte, int) {
	at := len(b)
	return append(b, 0, 0, 0, 0, Version, byte(t)), at
}

// finish writes the length of the frame that starts at offset at.
func finish(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-lenSize))
	return b
}

// ParseHeader checks the version of a frame (the bytes after its length
// prefix) and returns its type and body.
func ParseHeader(frame []byte) (Type, []byte, error) {
	if len(frame) < versionSize+typeSize {
		return 0, nil, malformed("frame of %d bytes is shorter than its header", len(frame))
	}
	if frame[0] != Version {
		return 0, nil, malformed("version %d, want %d", frame[0], Version)
	}
	t := Type(frame[1])
	if t < TypeRequest || t > TypeChunk {
		return 0, nil, malformed("unknown frame type %d", t)
	}
	return t, frame[versionSize+typeSize:], nil
}

// FrameLen returns the length announced by a 4-byte prefix. Where int has
// 32 bits, a length of 2 GiB or more does not fit: it comes back as
// math.MaxInt, above any maximum, rather than as a negative number that
// would slip under one.
func FrameLen(prefix []byte) int {
	n := binary.BigEndian.Uint32(prefix)
	if uint64(n) > math.MaxInt {
		return math.MaxInt
	}
	return int(n)
}

// reader walks a body and records the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int, what string) bool {
	if r.err != nil {
		return false
	}
	if n < 0 {
		// Only where int has 32 bits: a uint32 length of 2 GiB or more
		// came out negative. No frame can hold it.
		r.err = malformed("%s: length %d out of range", what, uint32(n))
		return false
	}
	if len(r.b) < n {
		r.err = malformed("%s: need %d bytes, have %d", what, n, len(r.b))
		return false
	}
	return true
}

func (r *reader) u8(what string) uint8 {
	if !r.need(1, what) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16(what string) uint16 {
	if !r.need(2, what) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32(what string) uint32 {
	if !r.need(4, what) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64(what string) uint64 {
	if !r.need(8, what) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) bytes(n int, what string) []byte {
	if !r.need(n, what) {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// FrameType returns the type of a frame (the bytes after its length
// prefix) as its header gives it, or 0 if the frame is shorter than a
// header or of another version: a quick look for a receive path that
// chooses who handles a frame; ParseHeader checks it.
func FrameType(frame []byte) Type {
	if len(frame) < versionSize+typeSize || frame[0] != Version {
		return 0
	}
	return Type(frame[1])
}
