// Package mpcheck vets untrusted MessagePack before it is decoded.
//
// The decoder velo uses allocates what a string, binary or container
// header announces before it reads the data, so eleven bytes that announce
// a 4 GiB string make it allocate 4 GiB. Check walks the encoding once,
// without allocating, and refuses any length or element count that the
// remaining bytes cannot hold, and nesting deeper than MaxDepth.
//
// That is not enough: lengths that fit can still decode into far more
// memory than they take (8 M empty strings, 8 MiB, make a []string of
// 128 MiB), and msgpack reads a map inside an ext header where Check sees
// opaque data. CheckType walks the encoding as msgpack reads it into a
// given Go type, estimates what the decoded value holds, and refuses a
// payload over Growth × its size + Slack (ErrTooCostly).
package mpcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxDepth bounds the nesting of arrays and maps.
const MaxDepth = 256

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("msgpack: invalid encoding")

// Check reports whether b starts with one well-formed MessagePack value
// whose announced sizes fit in b.
func Check(b []byte) error {
	_, err := check(b)
	return err
}

// check is Check, and also says whether the value holds an ext.
func check(b []byte) (ext bool, err error) {
	// stack holds, per open container, how many elements remain to read.
	var stackBuf [16]uint64
	stack := append(stackBuf[:0], 1)
	for len(stack) > 0 {
		top := len(stack) - 1
		if stack[top] == 0 {
			stack = stack[:top]
			continue
		}
		stack[top]--
		if len(b) == 0 {
			return ext, fmt.Errorf("%w: truncated", ErrInvalid)
		}
		c := b[0]
		b = b[1:]
		var skip, elems uint64 // bytes of data to skip; elements of a container
		container := false
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
			// fixint, nil, bool
		case c >= 0x80 && c <= 0x8f:
			elems, container = 2*uint64(c&0x0f), true
		case c >= 0x90 && c <= 0x9f:
			elems, container = uint64(c&0x0f), true
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			n, size, isContainer, perElem, err := header(c, b)
			if err != nil {
				return ext, err
			}
			ext = ext || c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8
			b = b[size:]
			if isContainer {
				elems, container = n*perElem, true
			} else {
				skip = n
			}
		}
		if container {
			// Every element takes at least one byte.
			if elems > uint64(len(b)) {
				return ext, fmt.Errorf("%w: %d elements announced, %d bytes left", ErrInvalid, elems, len(b))
			}
			if len(stack) >= MaxDepth {
				return ext, fmt.Errorf("%w: nested deeper than %d", ErrInvalid, MaxDepth)
			}
			stack = append(stack, elems)
			continue
		}
		if skip > uint64(len(b)) {
			return ext, fmt.Errorf("%w: %d bytes announced, %d left", ErrInvalid, skip, len(b))
		}
		b = b[skip:]
	}
	return ext, nil
}

// fixedSize is the size of the data after the type byte of the scalars
// whose size the type says (floats, sized ints, fixext with its type byte).
var fixedSize = [256]uint8{
	0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8,
	0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8,
	0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17,
}

// header reads the length that follows a type byte c: n, and how many
// bytes the length (and an ext type) took. For containers it also says how
// many elements each counted entry has (2 for maps).
func header(c byte, b []byte) (n uint64, size int, container bool, perElem uint64, err error) {
	if v := fixedSize[c]; v != 0 {
		return uint64(v), 0, false, 0, nil
	}
	var width int
	extra := uint64(0)
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		width = 1
	case 0xc5, 0xda: // bin16, str16
		width = 2
	case 0xc6, 0xdb: // bin32, str32
		width = 4
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, then a type byte
		width = 1 << (c - 0xc7)
		extra = 1
	case 0xdc, 0xdd: // array16/32
		width, container, perElem = 2<<(c-0xdc), true, 1
	case 0xde, 0xdf: // map16/32
		width, container, perElem = 2<<(c-0xde), true, 2
	default:
		return 0, 0, false, 0, fmt.Errorf("%w: type byte 0x%02x", ErrInvalid, c)
	}
	if len(b) < width {
		return 0, 0, false, 0, fmt.Errorf("%w: truncated length", ErrInvalid)
	}
	switch width {
	case 1:
		n = uint64(b[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b))
	}
	return n + extra, width, container, perElem, nil
}
