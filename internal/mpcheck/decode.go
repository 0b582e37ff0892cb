package mpcheck

import (
	"bytes"
	"fmt"
	"reflect"

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
	d := msgpack.GetDecoder()
	defer msgpack.PutDecoder(d)
	d.Reset(bytes.NewReader(b))
	d.DisableAllocLimit(true)
	return d.Decode(v)
}
