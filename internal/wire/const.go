// Package wire is velo's frame codec: the single byte format that every
// transport carries. It works on byte slices only; nothing here touches a
// socket. docs/wire.md specifies the layout byte by byte.
//
// A frame is a 4-byte big-endian length followed by that many bytes:
//
//	length  uint32  bytes that follow (version + type + body)
//	version uint8   Version
//	type    uint8   one of the Type constants
//	body    ...     layout depends on type
//
// Encoders append whole frames, length prefix included, to a caller's
// buffer (Append*). Decoders (Parse*) take the bytes after the length prefix
// and return values whose byte slices alias the input.
package wire

import "time"

// Version is the frame format version this package writes and accepts.
const Version = 2

// Sizes of the fixed parts, in bytes.
const (
	lenSize     = 4
	versionSize = 1
	typeSize    = 1

	// PrefixLen is the size of the length prefix.
	PrefixLen = lenSize
	// HeaderLen is the size of everything before a frame's body.
	HeaderLen = lenSize + versionSize + typeSize

	idSize      = 8
	kindSize    = 1
	timeoutSize = 8
	nameLenSize = 1
	hdrCntSize  = 2
	hdrKeySize  = 2
	hdrValSize  = 4
	statusSize  = 1
	errLenSize  = 4

	// requestFixed is the body of a request without its variable parts.
	requestFixed = kindSize + idSize + timeoutSize + nameLenSize + hdrCntSize
	// responseFixed is the body of a response without its variable parts.
	responseFixed = idSize + statusSize + errLenSize
	pingSize      = 8
	goAwayFixed   = statusSize + errLenSize
)

// Limits the codec enforces whatever the configuration.
const (
	// MaxHandlerName is the longest handler name, in bytes.
	MaxHandlerName = 255
	// DefaultMaxFrame is the default largest frame (length prefix excluded).
	DefaultMaxFrame = 16 << 20
	// MaxHelloFrame is the largest frame a connection accepts before its
	// handshake is done: the _hello request, or its answer. The largest
	// hello an instance may send (system.MaxHelloHandlers and the other
	// limits: about 180 KiB) fits in it.
	MaxHelloFrame = 256 << 10
	// DefaultMaxHeaders is the default largest number of headers on a request.
	DefaultMaxHeaders = 64
	// DefaultMaxHeaderBytes is the default largest total size of header keys
	// and values on a request.
	DefaultMaxHeaderBytes = 16 << 10
	// MaxTimeout bounds the relative deadline a request may carry. Larger
	// values are clamped, so that a deadline never overflows time.Time.
	MaxTimeout = 100 * 365 * 24 * time.Hour
)

// Type says what a frame carries.
type Type uint8

// Frame types.
const (
	TypeRequest  Type = 1 // a call of a named handler
	TypeResponse Type = 2 // the outcome of an AMSync or Unary request
	TypeCancel   Type = 3 // the caller gave up on a request
	TypePing     Type = 4 // keepalive probe; answered by TypePong with the same data
	TypePong     Type = 5 // keepalive answer
	TypeGoAway   Type = 6 // the sender is closing the connection and says why
	TypeChunk    Type = 7 // a piece of a request or response too large for one frame
)

func (t Type) String() string {
	switch t {
	case TypeRequest:
		return "request"
	case TypeResponse:
		return "response"
	case TypeCancel:
		return "cancel"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeGoAway:
		return "goaway"
	case TypeChunk:
		return "chunk"
	}
	return "unknown"
}

// Kind is the messaging pattern of a request.
type Kind uint8

// Request kinds.
const (
	KindAMSend Kind = 1 // fire and forget: no response frame is sent
	KindAMSync Kind = 2 // the response says when the handler finished; no payload
	KindUnary  Kind = 3 // the response carries the handler's result
)

func (k Kind) String() string {
	switch k {
	case KindAMSend:
		return "am-send"
	case KindAMSync:
		return "am-sync"
	case KindUnary:
		return "unary"
	}
	return "unknown"
}

// WantsResponse reports whether a request of kind k is answered.
func (k Kind) WantsResponse() bool { return k == KindAMSync || k == KindUnary }

// Status is the outcome code of a response. StatusOK is success; every other
// value names one of velo's error kinds, so that the caller can rebuild a
// typed error after it crossed the network.
type Status uint8

// Status codes. The values are part of the wire format: never renumber.
const (
	StatusOK               Status = 0
	StatusHandlerNotFound  Status = 1
	StatusHandlerError     Status = 2
	StatusHandlerPanic     Status = 3
	StatusBusy             Status = 4
	StatusDeadlineExceeded Status = 5
	StatusCanceled         Status = 6
	StatusPeerUnknown      Status = 7
	StatusPeerLost         Status = 8
	StatusPayloadTooLarge  Status = 9
	StatusBadPayload       Status = 10
	StatusShuttingDown     Status = 11
	StatusHandlerStopped   Status = 12
	StatusBadRequest       Status = 13
	StatusInternal         Status = 14
	StatusOwnerLost        Status = 15
	StatusEventPoisoned    Status = 16
	StatusPermissionDenied Status = 17
	StatusUnauthenticated  Status = 18
)

// known reports whether s is one of the codes above. Decoders refuse the
// others; keep it in step when a code is added.
func (s Status) known() bool { return s <= StatusUnauthenticated }
