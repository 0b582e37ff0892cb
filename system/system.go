// Package system defines velo's reserved handlers and the messages they
// exchange. Handler names that start with an underscore belong to velo; a
// user handler may not take one.
//
//   - _hello: the first request on every connection. The dialing instance
//     sends its Hello; the accepting one answers with its own. Each side
//     then knows who is on the other end, which handlers it has, and the
//     largest frame it accepts.
//   - _list_handlers: answers the names of the instance's user handlers
//     as a MessagePack array of strings.
package system

import (
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/internal/mpcheck"
	"github.com/velo-messenger/velo/peer"
)

// Reserved handler names.
const (
	Hello        = "_hello"
	ListHandlers = "_list_handlers"
)

// IsReserved reports whether name belongs to velo.
func IsReserved(name string) bool { return strings.HasPrefix(name, "_") }

// HelloMsg is the payload of _hello, in both directions.
type HelloMsg struct {
	Info     peer.Info `msgpack:"info"`
	Handlers []string  `msgpack:"handlers"`
	MaxFrame int       `msgpack:"max_frame"` // largest frame the sender reads
	Protocol int       `msgpack:"protocol"`  // wire.Version of the sender
}

// Encode returns the MessagePack form of h.
func (h *HelloMsg) Encode() ([]byte, error) { return msgpack.Marshal(h) }

// DecodeHello reads a HelloMsg.
func DecodeHello(b []byte) (HelloMsg, error) {
	var h HelloMsg
	err := Unmarshal(b, &h)
	return h, err
}

// EncodeNames returns the payload of a _list_handlers answer.
func EncodeNames(names []string) ([]byte, error) { return msgpack.Marshal(names) }

// DecodeNames reads the payload of a _list_handlers answer.
func DecodeNames(b []byte) ([]string, error) {
	var names []string
	err := Unmarshal(b, &names)
	return names, err
}

// Unmarshal decodes MessagePack that came from the network: the encoding
// is vetted first (internal/mpcheck), so that a few bytes announcing a
// huge string or array cannot make the decoder allocate it.
//
// The decoder can also panic on some malformed input (found by
// FuzzTypedPayload: a nil where a struct is expected, inside a map); such
// a panic is returned as an error, as any other undecodable input.
func Unmarshal(b []byte, v any) (err error) {
	if err := mpcheck.Check(b); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: malformed input: decoder panicked: %v", r)
		}
	}()
	return msgpack.Unmarshal(b, v)
}
