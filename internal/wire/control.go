package wire

import "encoding/binary"

// AppendCancel appends a cancel frame: the caller of request id no longer
// waits for it. Body: id uint64.
func AppendCancel(b []byte, id uint64) []byte {
	b, at := begin(b, TypeCancel)
	b = binary.BigEndian.AppendUint64(b, id)
	return finish(b, at)
}

// ParseCancel decodes a cancel body.
func ParseCancel(body []byte) (uint64, error) {
	if len(body) != idSize {
		return 0, malformed("cancel body of %d bytes, want %d", len(body), idSize)
	}
	return binary.BigEndian.Uint64(body), nil
}

// AppendPing appends a ping (pong false) or pong (pong true) frame carrying
// 8 opaque bytes that the pong echoes. Body: data uint64.
func AppendPing(b []byte, pong bool, data uint64) []byte {
	t := TypePing
	if pong {
		t = TypePong
	}
	b, at := begin(b, t)
	b = binary.BigEndian.AppendUint64(b, data)
	return finish(b, at)
}

// ParsePing decodes a ping or pong body.
func ParsePing(body []byte) (uint64, error) {
	if len(body) != pingSize {
		return 0, malformed("ping body of %d bytes, want %d", len(body), pingSize)
	}
	return binary.BigEndian.Uint64(body), nil
}

// GoAway tells the peer that the sender is closing the connection.
//
// Body layout: status uint8 (why), msglen uint32, msg.
type GoAway struct {
	Status  Status
	Message string
}

// AppendGoAway appends a goaway frame.
func AppendGoAway(b []byte, g GoAway) []byte {
	b, at := begin(b, TypeGoAway)
	b = append(b, byte(g.Status))
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Message)))
	b = append(b, g.Message...)
	return finish(b, at)
}

// ParseGoAway decodes a goaway body.
func ParseGoAway(body []byte) (GoAway, error) {
	rd := reader{b: body}
	var g GoAway
	g.Status = Status(rd.u8("status"))
	msg := rd.bytes(int(rd.u32("message length")), "message")
	if rd.err != nil {
		return GoAway{}, rd.err
	}
	if !g.Status.known() {
		return GoAway{}, malformed("unknown status %d", g.Status)
	}
	if len(rd.b) != 0 {
		return GoAway{}, malformed("%d bytes after goaway message", len(rd.b))
	}
	g.Message = string(msg)
	return g, nil
}
