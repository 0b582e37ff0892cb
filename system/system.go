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
//   - _handlers: one-way, to every connected peer when the instance's
//     user handlers change after its hello: the new list, as
//     _list_handlers answers it, so that routing stays current.
//   - _ping: answers an empty result at once; Messenger.Ping times it.
//   - _describe: what the user handlers take and give (HandlerDesc), for
//     tools such as the velo command.
//   - _event_subscribe, _event_trigger, _event_complete: the distributed
//     events protocol, one-way messages between an event's owner and the
//     instances that await or complete it. Their byte layout belongs to
//     package events, which encodes and decodes them next to the handle
//     they carry (docs/events.md describes it).
package system

import (
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/internal/mpcheck"
)

// Reserved handler names.
const (
	Hello        = "_hello"
	ListHandlers = "_list_handlers"
	// HandlersChanged carries an instance's new list of user handlers to
	// its connected peers.
	HandlersChanged = "_handlers"
	// Ping answers at once, with nothing.
	Ping = "_ping"
	// Stats answers the instance's velo.Stats, MessagePack-encoded, when
	// the instance serves them (velo.Options.ServeStats).
	Stats = "_stats"

	// EventSubscribe carries subscriber → owner: "tell me when these
	// events complete".
	EventSubscribe = "_event_subscribe"
	// EventTrigger carries owner → subscriber: "this event completed with
	// this outcome".
	EventTrigger = "_event_trigger"
	// EventComplete carries non-owner → owner: "please trigger (or
	// poison) this event".
	EventComplete = "_event_complete"
)

// The streams protocol's messages (velo's streams, docs/streams.md), all
// one-way. Receiver is the instance that opened the stream (its owner).
const (
	// StreamAttach carries sender → owner: "I send on this stream".
	StreamAttach = "_stream_attach"
	// StreamItem carries sender → owner: one item.
	StreamItem = "_stream_item"
	// StreamEnd carries sender → owner: the stream ended, with a status.
	StreamEnd = "_stream_end"
	// StreamCredit carries owner → sender: the attach was accepted, or
	// items were taken: send this many more bytes.
	StreamCredit = "_stream_credit"
	// StreamCancel carries owner → sender: stop, with a status.
	StreamCancel = "_stream_cancel"
)

// IsStream reports whether name is one of the streams protocol's messages.
func IsStream(name string) bool {
	switch name {
	case StreamAttach, StreamItem, StreamEnd, StreamCredit, StreamCancel:
		return true
	}
	return false
}

// IsEvent reports whether name is one of the events protocol's messages.
func IsEvent(name string) bool {
	return name == EventSubscribe || name == EventTrigger || name == EventComplete
}

// IsReserved reports whether name belongs to velo.
func IsReserved(name string) bool { return strings.HasPrefix(name, "_") }

// EncodeNames returns the payload of a _list_handlers answer.
func EncodeNames(names []string) ([]byte, error) { return msgpack.Marshal(names) }

// DecodeNames reads the payload of a _list_handlers answer or a
// HandlersChanged message, and checks it against the limits of a hello.
func DecodeNames(b []byte) ([]string, error) {
	var names []string
	if err := mpcheck.Unmarshal(b, &names); err != nil {
		return nil, err
	}
	if err := CheckNames(names); err != nil {
		return nil, err
	}
	return names, nil
}
