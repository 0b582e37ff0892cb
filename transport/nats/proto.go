package nats

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The messages of the transport, each one NATS message. A connection is
// known on each side by a local id that side chose; every message names
// the receiver's id, so a receiver finds the connection with one lookup
// and ids never need to be unique across instances.
//
//	open    dialer → listener subject, as a NATS request
//	        kind u8 | version u8 | dialer id u64 | window u32 | dialer's subject
//	accept  the reply to open
//	        kind u8 | version u8 | listener id u64 | window u32
//	refuse  the reply to open when the listener will not take it
//	        kind u8 | reason (text)
//	data    kind u8 | receiver id u64 | seq u64 | frame (velo frame without its length prefix)
//	window  kind u8 | receiver id u64 | bytes u32: the receiver handled that many more bytes
//	close   kind u8 | receiver id u64 | reason (text)
//
// Flow control: each side grants the other a window of bytes in open or
// accept; a sender stops while it has no credit left, and the receiver
// returns credit (window messages) as its handler consumes frames. So a
// receiver that does not keep up slows its sender down, as TCP does, and
// never buffers more than its window plus one frame per connection.
//
// Sequence numbers count the data messages of one direction from zero; a
// gap means NATS dropped a message (a slow consumer, a reconnect), and the
// connection is closed rather than going on without it.
const (
	kindOpen   byte = 1
	kindAccept byte = 2
	kindRefuse byte = 3
	kindData   byte = 4
	kindWindow byte = 5
	kindClose  byte = 6
)

// protoVersion is the version of the messages above, carried by open and
// accept.
const protoVersion = 1

// Field sizes, in bytes.
const (
	kindLen    = 1
	versionLen = 1
	idLen      = 8
	seqLen     = 8
	windowLen  = 4

	openFixed     = kindLen + versionLen + idLen + windowLen
	acceptLen     = kindLen + versionLen + idLen + windowLen
	dataHeaderLen = kindLen + idLen + seqLen
	windowMsgLen  = kindLen + idLen + windowLen
	closeFixed    = kindLen + idLen

	// maxReasonLen bounds the reason text of close and refuse.
	maxReasonLen = 256
)

var errShort = errors.New("nats: message too short")

func appendOpen(b []byte, id uint64, window uint32, subject string) []byte {
	b = append(b, kindOpen, protoVersion)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint32(b, window)
	return append(b, subject...)
}

func parseOpen(m []byte) (id uint64, window uint32, subject string, err error) {
	if len(m) <= openFixed {
		return 0, 0, "", errShort
	}
	if m[1] != protoVersion {
		return 0, 0, "", fmt.Errorf("nats: protocol version %d, want %d", m[1], protoVersion)
	}
	id = binary.BigEndian.Uint64(m[2:])
	window = binary.BigEndian.Uint32(m[10:])
	return id, window, string(m[openFixed:]), nil
}

func appendAccept(b []byte, id uint64, window uint32) []byte {
	b = append(b, kindAccept, protoVersion)
	b = binary.BigEndian.AppendUint64(b, id)
	return binary.BigEndian.AppendUint32(b, window)
}

func parseAccept(m []byte) (id uint64, window uint32, err error) {
	if len(m) != acceptLen {
		return 0, 0, errShort
	}
	if m[1] != protoVersion {
		return 0, 0, fmt.Errorf("nats: protocol version %d, want %d", m[1], protoVersion)
	}
	return binary.BigEndian.Uint64(m[2:]), binary.BigEndian.Uint32(m[10:]), nil
}

func appendRefuse(b []byte, reason string) []byte {
	return append(append(b, kindRefuse), clip(reason)...)
}

func appendDataHeader(b []byte, id, seq uint64) []byte {
	b = append(b, kindData)
	b = binary.BigEndian.AppendUint64(b, id)
	return binary.BigEndian.AppendUint64(b, seq)
}

func parseData(m []byte) (id, seq uint64, frame []byte, err error) {
	if len(m) < dataHeaderLen {
		return 0, 0, nil, errShort
	}
	return binary.BigEndian.Uint64(m[1:]), binary.BigEndian.Uint64(m[9:]), m[dataHeaderLen:], nil
}

func appendWindow(b []byte, id uint64, n uint32) []byte {
	b = append(b, kindWindow)
	b = binary.BigEndian.AppendUint64(b, id)
	return binary.BigEndian.AppendUint32(b, n)
}

func parseWindow(m []byte) (id uint64, n uint32, err error) {
	if len(m) != windowMsgLen {
		return 0, 0, errShort
	}
	return binary.BigEndian.Uint64(m[1:]), binary.BigEndian.Uint32(m[9:]), nil
}

func appendClose(b []byte, id uint64, reason string) []byte {
	b = append(b, kindClose)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, clip(reason)...)
}

func parseClose(m []byte) (id uint64, reason string, err error) {
	if len(m) < closeFixed {
		return 0, "", errShort
	}
	return binary.BigEndian.Uint64(m[1:]), string(clip(string(m[closeFixed:]))), nil
}

// clip bounds a reason text.
func clip(s string) string {
	if len(s) > maxReasonLen {
		return s[:maxReasonLen]
	}
	return s
}
