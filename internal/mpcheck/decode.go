package mpcheck

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Unmarshal decodes MessagePack that came from the network into v, a
// pointer. The encoding is vetted first, following v's type
// (CheckType): a few bytes that announce a huge string or array,
// or that would decode into far more memory than they take (8 M empty
// strings make a []string of 128 MiB), are refused before anything is
// decoded. The decoded value holds at most Growth bytes per
// payload byte, plus Slack; the decoder allocates at most about
// twice that on the way.
//
// Since every length is vetted, the decoder's own allocation limits are
// off: they only make it allocate large slices, maps and strings in steps,
// copying them as they grow.
//
// The decoder can also panic on some malformed input (found by
// FuzzTypedPayload: a nil where a struct is expected, inside a map); such
// a panic is returned as an error, as any other undecodable input.
func Unmarshal(b []byte, v any) (err error) {
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer {
		err = CheckType(b, t.Elem())
	} else {
		err = Check(b) // msgpack refuses to decode into it anyway
	}
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: malformed input: decoder panicked: %v", r)
		}
	}()
	d := decoders.Get().(*decoder)
	defer d.put()
	d.r.Reset(b)
	d.d.Reset(&d.r)
	d.d.DisableAllocLimit(true)
	return d.d.Decode(v)
}

// decoder is a msgpack decoder with the reader it reads from, reused: a
// decode allocates only what it decodes.
type decoder struct {
	d *msgpack.Decoder
	r bytes.Reader
}

var decoders = sync.Pool{New: func() any { return &decoder{d: msgpack.NewDecoder(nil)} }}

func (d *decoder) put() {
	d.r.Reset(nil)
	d.d.Reset(nil)
	decoders.Put(d)
}

// Marshal encodes v as msgpack.Marshal does, with a reused encoder and
// buffer: the encoding, in a slice of its own size, is its one
// allocation.
func Marshal(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.b.Reset()
	e.e.Reset(&e.b)
	err := e.e.Encode(v)
	var out []byte
	if err == nil {
		out = bytes.Clone(e.b.Bytes())
	}
	e.e.Reset(nil)
	if e.b.Cap() <= maxKept {
		encoders.Put(e)
	}
	return out, err
}

// encoder is a msgpack encoder with its buffer, reused.
type encoder struct {
	e *msgpack.Encoder
	b bytes.Buffer
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{e: msgpack.NewEncoder(nil)}
	e.b.Grow(256)
	return e
}}

// maxKept is the largest encoding buffer kept for reuse: one large value
// does not pin its buffer.
const maxKept = 64 << 10
