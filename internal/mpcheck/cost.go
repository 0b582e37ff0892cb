package mpcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
)

// Growth and Slack bound the memory that decoding a payload may take:
// CheckType refuses a payload whose decoded value would hold more than
// Growth × len(payload) + Slack bytes.
//
// A []int64 of small numbers (one byte each) holds 8 bytes per payload
// byte, a map with keys of a few letters about 10; strings, byte slices,
// floats and structs with named fields hold less. What Growth refuses are
// the encodings that a few bytes turn into much more memory: 8 M empty
// strings (8 MiB) that make a []string of 128 MiB (16 bytes per byte),
// nils or empty maps that become large structs in a slice, long lists of
// one-byte values decoded into interfaces, maps of one-letter keys. Slack
// lets every small payload through whatever its shape.
const (
	Growth = 12
	Slack  = 64 << 10
)

// ErrTooCostly is returned by CheckType for a well-formed payload whose
// decoding would take more memory than Growth and Slack allow.
var ErrTooCostly = errors.New("msgpack: payload decodes to too much memory")

// What decoding into an interface makes, on 64-bit platforms: the boxes
// of numbers and strings, and the generic containers.
const (
	boxNumber = 8  // a number wider than one byte
	boxString = 16 // string header
	boxSlice  = 24 // slice header ([]byte, []any)
	sizeIface = 16 // one []any element
	extCost   = 64 // a registered ext type's new value; its data counted twice
	methodPad = 64 // what a decoding method may add to the bytes it is given
	mapHeader = 48
)

// mapCost is what make(map[K]V, n) takes: Go's maps keep at most 7 of
// every 8 slots in use and size their tables in powers of two, so n
// entries take up to 16n/7 slots of key, value and a control byte.
func mapCost(n uint64, key, val int64) (int64, bool) {
	slot := key + val + 1
	per := slot * 16 / 7
	if n > uint64(1<<62)/uint64(per+1) {
		return 0, false
	}
	return mapHeader + 8*slot + int64(n)*per, true
}

// dataSize is what n bytes of string or byte slice data take. Below 16
// bytes Go packs them into shared 16-byte blocks (one per block past 8
// bytes, two past 5); above, it rounds up to a size class, wasting at most
// an eighth, or to whole pages past 32 KiB.
func dataSize(n uint64) int64 {
	switch {
	case n == 0:
		return 0
	case n <= 4:
		return int64(n + 1)
	case n <= 8:
		return 8
	case n < 16:
		return 16
	}
	return objSize(int64(n))
}

// objSize is what an allocation of n bytes takes: a size class up to
// 32 KiB, wasting at most an eighth, whole 8 KiB pages above.
func objSize(n int64) int64 {
	switch {
	case n == 0:
		return 0
	case n <= 8:
		return 8
	case n <= 16:
		return 16
	case n <= 32<<10:
		return n + n/8 + 8
	}
	return n + 8<<10
}

// CheckType does what Check does, following the bytes as msgpack/v5 reads
// them when it decodes into a value of type t, and also refuses, with
// ErrTooCostly, a payload whose decoded value would hold more than
// Growth × len(b) + Slack bytes. t is the type decoded into (T for an
// Unmarshal into a *T).
//
// The estimate follows t: a slice of n elements holds n times the size of
// its element, a map its table, a pointer its target, strings and byte
// slices their data; interfaces hold what msgpack makes of the encoding
// (boxed numbers and strings, []any, map[string]any). A type with a
// decoding method of its own is counted as the bytes the method is given
// and what the encoding holds; what the method allocates beyond that is
// its own. The decoder's scratch buffer, as long as the longest string it
// reads, is counted too.
//
// What msgpack allocates in passing is not: it makes each slice twice
// (reflect.MakeSlice, then AppendSlice onto the empty one) and a new key
// and value for each entry of a typed map, garbage at once. Decoding
// therefore allocates at most about twice the estimate; the tests hold it
// to that (TestCostBoundsWhatDecodingAllocates).
func CheckType(b []byte, t reflect.Type) error {
	r := rootOf(t)
	if len(b) <= r.small {
		// Too short to reach the bound: validating is enough, unless an
		// ext makes msgpack read a map where Check sees opaque data.
		if ext, err := check(b); !ext {
			return err
		}
	}
	_, err := walk(b, r.shape)
	return err
}

// Cost returns the estimate CheckType compares with its bound, or the
// error CheckType returns. Once the estimate passes the bound, the walk
// stops: the cost returned with ErrTooCostly is only known to be larger.
func Cost(b []byte, t reflect.Type) (int64, error) {
	return walk(b, rootOf(t).shape)
}

func walk(b []byte, s *shape) (int64, error) {
	w := walker{b: b, budget: Growth*int64(len(b)) + Slack}
	err := w.value(s, 0)
	if err == nil {
		err = w.add(int64(w.scratch))
	}
	return w.cost, err
}

// class is what a type byte announces.
type class uint8

const (
	classNil class = iota
	classBool
	classInt // n: bytes of data after the type byte, 0 for a fixint
	classFloat
	classStr // n: bytes of data
	classBin
	classExt // n: bytes of data, after the ext type
	classArray
	classMap // n: entries
)

type head struct {
	class class
	n     uint64
}

type walker struct {
	b       []byte // what is left to read
	cost    int64
	budget  int64
	scratch uint64 // the decoder's reusable buffer grows to the longest string it reads
}

func (w *walker) add(n int64) error {
	if w.cost += n; w.cost > w.budget {
		return w.costly()
	}
	return nil
}

func (w *walker) costly() error {
	return fmt.Errorf("%w: more than %d bytes for a payload of %d (limit %d × size + %d)",
		ErrTooCostly, w.budget, (w.budget-Slack)/Growth, Growth, Slack)
}

// addN adds an array of n values of size bytes each.
func (w *walker) addN(n uint64, size int64) error {
	if size > 0 && n > uint64(w.budget)/uint64(size) {
		return w.add(w.budget + 1)
	}
	return w.add(objSize(int64(n) * size))
}

// typeByte says what a type byte announces: its class, then either the
// count or length it holds itself (fix types) or the width of the length
// field that follows, and how many bytes of scalar data or ext type come
// before the data.
type typeByte struct {
	class class
	n     uint8 // fixmap, fixarray, fixstr: the count or length
	width uint8 // bytes of the big-endian length field
	skip  uint8 // scalar data (ints, floats) or the ext type byte
	fixed uint8 // fixext: bytes of data
	bad   bool
}

var typeBytes = func() (t [256]typeByte) {
	for c := range 256 {
		b := &t[c]
		switch {
		case c <= 0x7f || c >= 0xe0:
			b.class = classInt
		case c <= 0x8f:
			b.class, b.n = classMap, uint8(c&0x0f)
		case c <= 0x9f:
			b.class, b.n = classArray, uint8(c&0x0f)
		case c <= 0xbf:
			b.class, b.n = classStr, uint8(c&0x1f)
		case c == 0xc0:
			b.class = classNil
		case c == 0xc2 || c == 0xc3:
			b.class = classBool
		case c == 0xca || c == 0xcb:
			b.class, b.skip = classFloat, fixedSize[c]
		case c >= 0xcc && c <= 0xd3:
			b.class, b.skip = classInt, fixedSize[c]
		case c >= 0xd4 && c <= 0xd8: // fixext: type byte, then 1..16 bytes
			b.class, b.skip, b.fixed = classExt, 1, fixedSize[c]-1
		case c >= 0xc4 && c <= 0xc6:
			b.class, b.width = classBin, 1<<(c-0xc4)
		case c >= 0xc7 && c <= 0xc9: // ext: length, then a type byte
			b.class, b.width, b.skip = classExt, 1<<(c-0xc7), 1
		case c >= 0xd9 && c <= 0xdb:
			b.class, b.width = classStr, 1<<(c-0xd9)
		case c == 0xdc || c == 0xdd:
			b.class, b.width = classArray, 2<<(c-0xdc)
		case c == 0xde || c == 0xdf:
			b.class, b.width = classMap, 2<<(c-0xde)
		default:
			b.bad = true // 0xc1
		}
	}
	return t
}()

// head reads a type byte and what follows it up to the data: the length
// of a string, binary or ext (and its type), the count of a container, or
// a scalar whole. Like Check, it refuses a length or count that the bytes
// left cannot hold.
func (w *walker) head() (head, error) {
	if len(w.b) == 0 {
		return head{}, fmt.Errorf("%w: truncated", ErrInvalid)
	}
	t := &typeBytes[w.b[0]]
	b := w.b[1:]
	if t.bad {
		return head{}, fmt.Errorf("%w: type byte 0x%02x", ErrInvalid, w.b[0])
	}
	h := head{class: t.class, n: uint64(t.n)}
	if t.width != 0 {
		if len(b) < int(t.width) {
			return head{}, fmt.Errorf("%w: truncated length", ErrInvalid)
		}
		switch t.width {
		case 1:
			h.n = uint64(b[0])
		case 2:
			h.n = uint64(binary.BigEndian.Uint16(b))
		case 4:
			h.n = uint64(binary.BigEndian.Uint32(b))
		}
		b = b[t.width:]
	}
	if t.skip != 0 {
		if len(b) < int(t.skip) {
			return head{}, fmt.Errorf("%w: truncated", ErrInvalid)
		}
		b = b[t.skip:]
		h.n += uint64(t.fixed)
	}
	w.b = b
	switch h.class {
	case classInt, classFloat:
		h.n = uint64(t.skip) // read whole; the width says whether msgpack boxes it
	case classMap:
		if 2*h.n > uint64(len(b)) { // every key and value takes a byte at least
			return head{}, fmt.Errorf("%w: %d entries announced, %d bytes left", ErrInvalid, h.n, len(b))
		}
	default:
		if h.n > uint64(len(b)) {
			return head{}, fmt.Errorf("%w: %d announced, %d bytes left", ErrInvalid, h.n, len(b))
		}
	}
	return h, nil
}

// data skips the n bytes of a string, binary or ext.
func (w *walker) data(h head) {
	w.b = w.b[h.n:]
}

// value walks one value decoded into s.
func (w *walker) value(s *shape, depth int) error {
	h, err := w.head()
	if err != nil {
		return err
	}
	return w.body(s, h, depth)
}

// body walks what follows head h, decoded into s; depth counts the
// containers around it.
func (w *walker) body(s *shape, h head, depth int) error {
	if (h.class == classArray || h.class == classMap) && depth >= MaxDepth-1 {
		// As Check counts: MaxDepth - 1 containers, one in another.
		return fmt.Errorf("%w: nested deeper than %d", ErrInvalid, MaxDepth)
	}
	if h.class == classNil && s.kind != kindAny {
		return nil // every decoder takes nil as the zero value
	}
	switch s.kind {
	case kindSkip:
		return w.skip(h, depth)
	case kindScalar:
		switch h.class {
		case classBool, classInt, classFloat:
			return nil
		case classStr, classBin, classExt: // time.Time parses strings
			w.data(h)
			w.scratch = max(w.scratch, h.n)
			return w.add(dataSize(h.n))
		}
	case kindString:
		if h.class == classStr || h.class == classBin {
			w.data(h)
			w.scratch = max(w.scratch, h.n)
			return w.add(dataSize(h.n))
		}
	case kindBytes, kindText:
		if h.class == classStr || h.class == classBin {
			w.data(h)
			if s.kind == kindText {
				return w.add(dataSize(h.n) + methodPad)
			}
			return w.add(dataSize(h.n))
		}
	case kindByteArray:
		if h.class == classStr || h.class == classBin {
			w.data(h)
			return nil
		}
	case kindCustom:
		// The method may read the value as it likes, or get its raw bytes.
		start := len(w.b)
		if err := w.anyBody(h, depth); err != nil {
			return err
		}
		return w.add(int64(start-len(w.b)) + methodPad)
	case kindSlice, kindArray:
		if h.class == classArray {
			if s.kind == kindSlice {
				if err := w.addN(h.n, s.elem.size); err != nil {
					return err
				}
			}
			for range h.n {
				if err := w.value(s.elem, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
	case kindPointer:
		for range MaxDepth {
			if err := w.add(objSize(s.elem.size)); err != nil {
				return err
			}
			if s = s.elem; s.kind != kindPointer {
				return w.body(s, h, depth)
			}
		}
		// type P *P: msgpack would recurse forever, reading nothing.
		return fmt.Errorf("%w: a pointer type that points to itself", ErrInvalid)
	case kindMap:
		if h.class == classExt {
			// msgpack's DecodeMapLen skips an ext header and reads the map
			// from the ext's data on, whatever length the ext announced.
			h2, err := w.head()
			if err != nil {
				return err
			}
			if h2.class == classMap || h2.class == classNil {
				return w.body(s, h2, depth)
			}
			return w.body(anyShape, h2, depth)
		}
		if h.class == classMap {
			cost, ok := mapCost(h.n, s.key.size, s.elem.size)
			if !ok {
				cost = w.budget + 1
			}
			if err := w.add(cost); err != nil {
				return err
			}
			for range h.n {
				if err := w.value(s.key, depth+1); err != nil {
					return err
				}
				if err := w.value(s.elem, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
	case kindStruct:
		switch h.class {
		case classMap:
			next := 0 // encoders write the fields in order: try the next one first
			for range h.n {
				k, err := w.head()
				if err != nil {
					return err
				}
				var f *field
				switch k.class {
				case classStr, classBin:
					name := w.b[:k.n]
					if next < len(s.list) && s.list[next].name == string(name) {
						f = s.list[next]
						next++
					} else {
						f = s.fields[string(name)]
					}
					w.data(k)
					w.scratch = max(w.scratch, k.n)
				case classNil:
				default:
					// msgpack stops here; walking on costs more, never less.
					if err := w.body(anyShape, k, depth+1); err != nil {
						return err
					}
				}
				if f == nil {
					if err := w.value(skipShape, depth+1); err != nil {
						return err
					}
					continue
				}
				if err := w.add(f.alloc); err != nil {
					return err
				}
				if err := w.value(f.shape, depth+1); err != nil {
					return err
				}
			}
			return nil
		case classArray:
			if h.n != uint64(len(s.list)) {
				// msgpack refuses it (an empty array is the zero value).
				return w.skip(h, depth)
			}
			for _, f := range s.list {
				if err := w.add(f.alloc); err != nil {
					return err
				}
				if err := w.value(f.shape, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
	}
	// An interface, or an encoding the type's decoder does not expect:
	// msgpack refuses most of those, but walking the value as if it went
	// into an interface costs more, never less.
	return w.anyBody(h, depth)
}

// anyBody walks a value decoded into an interface: msgpack's
// DecodeInterface makes int8 and uint8 without allocating, boxes wider
// numbers and strings, and makes []any, map[string]any and registered ext
// types.
func (w *walker) anyBody(h head, depth int) error {
	switch h.class {
	case classNil, classBool:
		return nil
	case classInt:
		if h.n <= 1 {
			return nil
		}
		return w.add(boxNumber)
	case classFloat:
		return w.add(boxNumber)
	case classStr:
		w.data(h)
		w.scratch = max(w.scratch, h.n)
		return w.add(boxString + dataSize(h.n))
	case classBin:
		w.data(h)
		return w.add(boxSlice + dataSize(h.n))
	case classExt:
		w.data(h)
		w.scratch = max(w.scratch, h.n)
		return w.add(extCost + 2*dataSize(h.n))
	case classArray:
		if err := w.addN(h.n, sizeIface); err != nil {
			return err
		}
		if err := w.add(boxSlice); err != nil {
			return err
		}
		for range h.n {
			if err := w.value(anyShape, depth+1); err != nil {
				return err
			}
		}
		return nil
	case classMap:
		cost, ok := mapCost(h.n, boxString, sizeIface)
		if !ok {
			cost = w.budget + 1
		}
		if err := w.add(cost); err != nil {
			return err
		}
		for range h.n {
			if err := w.value(stringShape, depth+1); err != nil {
				return err
			}
			if err := w.value(anyShape, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}

// stringShape is a map[string]any's key.
var stringShape = &shape{kind: kindString, size: 16}

// skip walks a value that is not decoded: validated, costing nothing but
// the decoder's scratch buffer that reads past its data.
func (w *walker) skip(h head, depth int) error {
	switch h.class {
	case classStr, classBin, classExt:
		w.data(h)
		w.scratch = max(w.scratch, h.n)
	case classArray, classMap:
		n := h.n
		if h.class == classMap {
			n *= 2
		}
		for range n {
			if err := w.value(skipShape, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
