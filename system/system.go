// Package system defines velo's reserved handlers and the messages they
// exchange. Handler names that start with an underscore belong to velo; a
// user handler may not take one.
//
//   - _hello: the first request on every connection. The dialing instance
//     sends its Hello; the accepting one answers with its own. Each side
//     then knows who is on the other end, which handlers it has, and the
//     largest frame it accepts. A hello is bounded (see MaxHelloHandlers
//     and the other limits), so that it fits in wire.MaxHelloFrame.
//   - _list_handlers: answers the names of the instance's user handlers
//     as a MessagePack array of strings.
package system

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/internal/mpcheck"
)

// Reserved handler names.
const (
	Hello        = "_hello"
	ListHandlers = "_list_handlers"
)

// IsReserved reports whether name belongs to velo.
func IsReserved(name string) bool { return strings.HasPrefix(name, "_") }

// EncodeNames returns the payload of a _list_handlers answer.
func EncodeNames(names []string) ([]byte, error) { return msgpack.Marshal(names) }

// DecodeNames reads the payload of a _list_handlers answer.
func DecodeNames(b []byte) ([]string, error) {
	var names []string
	err := Unmarshal(b, &names)
	return names, err
}

// Unmarshal decodes MessagePack that came from the network into v, a
// pointer. The encoding is vetted first, following v's type
// (mpcheck.CheckType): a few bytes that announce a huge string or array,
// or that would decode into far more memory than they take (8 M empty
// strings make a []string of 128 MiB), are refused before anything is
// decoded. The decoded value holds at most mpcheck.Growth bytes per
// payload byte, plus mpcheck.Slack; the decoder allocates at most about
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
		err = mpcheck.CheckType(b, t.Elem())
	} else {
		err = mpcheck.Check(b) // msgpack refuses to decode into it anyway
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
