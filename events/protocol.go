package events

import (
	"encoding/binary"

	"github.com/velo-messenger/velo/system"
)

// Reserved handler names, defined with velo's other reserved handlers in
// package system. The messenger hands every one-way message it receives
// under one of them to Manager.Deliver.
const (
	// SubscribeHandler carries subscriber → owner: "tell me when these
	// events complete". The owner answers at once for completed events.
	SubscribeHandler = system.EventSubscribe
	// TriggerHandler carries owner → subscriber: "this event completed
	// with this outcome" (or "this event is gone", or "this handle is of
	// another incarnation of mine").
	TriggerHandler = system.EventTrigger
	// CompleteHandler carries non-owner → owner: "please trigger (or
	// poison) this event".
	CompleteHandler = system.EventComplete
)

// Layout of the event messages (docs/events.md is the reference). All
// integers are big-endian.
//
//	subscribe: version u8 | count u16 | count × handle (HandleSize bytes)
//	trigger:   version u8 | handle | kind u8 | reason_len u16 | reason
//	complete:  version u8 | handle | kind u8 | reason_len u16 | reason
const (
	// protoVersion 2: handles carry the owner's epoch (HandleSize 32).
	protoVersion = 2

	subscribeHeaderLen = 1 + 2
	outcomeHeaderLen   = 1 + HandleSize + 1 + 2

	// maxSubscribeBatch caps the handles in one subscribe message, which
	// bounds both its size (32 KiB) and what a receiver allocates for it.
	maxSubscribeBatch = 1024

	// MaxReasonLen is the longest poison reason, in bytes, that an event
	// message can carry.
	MaxReasonLen = 1<<16 - 1
)

// kind is how an event ended, as carried by trigger and complete messages.
type kind uint8

const (
	kindPending   kind = 0 // never on the wire
	kindTriggered kind = 1
	kindPoisoned  kind = 2
	kindGone      kind = 3 // trigger only: the owner does not know the handle
	kindRestarted kind = 4 // trigger only: another incarnation of the owner issued the handle
)

// appendSubscribe appends a subscribe message for hs, which holds 1 to
// maxSubscribeBatch handles.
func appendSubscribe(b []byte, hs []Handle) []byte {
	b = append(b, protoVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(hs)))
	for _, h := range hs {
		b = appendHandle(b, h)
	}
	return b
}

// parseSubscribe decodes a subscribe message. It checks the length against
// the count before allocating.
func parseSubscribe(b []byte) ([]Handle, error) {
	if len(b) < subscribeHeaderLen {
		return nil, malformed("subscribe: %d bytes, shorter than its header", len(b))
	}
	if b[0] != protoVersion {
		return nil, malformed("subscribe: version %d", b[0])
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if n == 0 || n > maxSubscribeBatch {
		return nil, malformed("subscribe: %d handles, want 1 to %d", n, maxSubscribeBatch)
	}
	if len(b) != subscribeHeaderLen+n*HandleSize {
		return nil, malformed("subscribe: %d bytes for %d handles", len(b), n)
	}
	hs := make([]Handle, n)
	for i := range hs {
		hs[i] = readHandle(b[subscribeHeaderLen+i*HandleSize:])
	}
	return hs, nil
}

// appendOutcome appends a trigger or complete message. The caller keeps
// reason within MaxReasonLen and empty unless k is kindPoisoned.
func appendOutcome(b []byte, h Handle, k kind, reason string) []byte {
	b = append(b, protoVersion)
	b = appendHandle(b, h)
	b = append(b, byte(k))
	b = binary.BigEndian.AppendUint16(b, uint16(len(reason)))
	return append(b, reason...)
}

// parseOutcome decodes a trigger message, or a complete message when
// trigger is false (the kinds only an owner's answer carries, gone and
// restarted, are refused then). The reason is copied out of b.
func parseOutcome(b []byte, trigger bool) (Handle, kind, string, error) {
	if len(b) < outcomeHeaderLen {
		return Handle{}, 0, "", malformed("outcome: %d bytes, shorter than its header", len(b))
	}
	if b[0] != protoVersion {
		return Handle{}, 0, "", malformed("outcome: version %d", b[0])
	}
	h := readHandle(b[1:])
	k := kind(b[1+HandleSize])
	n := int(binary.BigEndian.Uint16(b[outcomeHeaderLen-2:]))
	switch {
	case k == kindTriggered, k == kindPoisoned, (k == kindGone || k == kindRestarted) && trigger:
	default:
		return Handle{}, 0, "", malformed("outcome: kind %d", k)
	}
	if n != 0 && k != kindPoisoned {
		return Handle{}, 0, "", malformed("outcome: reason with kind %d", k)
	}
	if len(b) != outcomeHeaderLen+n {
		return Handle{}, 0, "", malformed("outcome: %d bytes for a %d-byte reason", len(b), n)
	}
	return h, k, string(b[outcomeHeaderLen:]), nil
}
