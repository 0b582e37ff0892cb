package wire

import (
	"encoding/binary"
	"time"
)

// Request is a call of a named handler.
//
// Body layout (after the frame header):
//
//	kind     uint8
//	id       uint64  chosen by the caller, unique among its requests in flight on the connection
//	timeout  uint64  nanoseconds the caller still waits; 0: no deadline
//	namelen  uint8   1..255
//	name     namelen bytes
//	nhdr     uint16
//	nhdr times: keylen uint16, key, vallen uint32, value
//	payload  the rest of the frame
type Request struct {
	Kind    Kind
	ID      uint64
	Timeout time.Duration // zero: no deadline
	Handler string
	Headers map[string]string
	Payload []byte
}

// Limits bounds what a decoder accepts.
type Limits struct {
	MaxHeaders     int // zero: DefaultMaxHeaders
	MaxHeaderBytes int // zero: DefaultMaxHeaderBytes
	// Intern, if set, returns the string for a handler name the decoder's
	// owner knows, so that ParseRequest need not allocate one per request;
	// ok false means unknown, and the name is copied.
	Intern func(name []byte) (s string, ok bool)
}

func (l Limits) maxHeaders() int {
	if l.MaxHeaders > 0 {
		return l.MaxHeaders
	}
	return DefaultMaxHeaders
}

func (l Limits) maxHeaderBytes() int {
	if l.MaxHeaderBytes > 0 {
		return l.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

// RequestLen is the size of r's frame, length prefix included.
func RequestLen(r *Request) int {
	n := HeaderLen + requestFixed + len(r.Handler) + len(r.Payload)
	if len(r.Headers) == 0 {
		return n
	}
	for k, v := range r.Headers {
		n += hdrKeySize + len(k) + hdrValSize + len(v)
	}
	return n
}

// AppendRequest appends r as a whole frame. The caller checks r with
// CheckRequest first; AppendRequest does not validate.
func AppendRequest(b []byte, r *Request) []byte {
	b, at := begin(b, TypeRequest)
	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.ID)
	t := r.Timeout
	if t < 0 {
		t = 1 // already expired: the smallest deadline there is
	}
	b = binary.BigEndian.AppendUint64(b, uint64(min(t, MaxTimeout)))
	b = append(b, byte(len(r.Handler)))
	b = append(b, r.Handler...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Headers)))
	if len(r.Headers) > 0 { // ranging over even an empty map costs a call
		for k, v := range r.Headers {
			b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
			b = append(b, k...)
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	b = append(b, r.Payload...)
	return finish(b, at)
}

// CheckRequest reports what makes r impossible to encode or to accept under
// the limits.
func CheckRequest(r *Request, l Limits) error {
	if r.Kind < KindAMSend || r.Kind > KindUnary {
		return malformed("unknown request kind %d", r.Kind)
	}
	if len(r.Handler) == 0 || len(r.Handler) > MaxHandlerName {
		return malformed("handler name of %d bytes, want 1..%d", len(r.Handler), MaxHandlerName)
	}
	if len(r.Headers) > l.maxHeaders() {
		return malformed("%d headers, limit %d", len(r.Headers), l.maxHeaders())
	}
	if len(r.Headers) == 0 {
		return nil
	}
	size := 0
	for k, v := range r.Headers {
		if len(k) > 0xffff {
			return malformed("header key of %d bytes", len(k))
		}
		size += len(k) + len(v)
	}
	if size > l.maxHeaderBytes() {
		return malformed("headers of %d bytes, limit %d", size, l.maxHeaderBytes())
	}
	return nil
}

// fixedRequest is the size of a request body's fields before the
// handler name: kind, id, timeout, name length.
const fixedRequest = 1 + 8 + 8 + 1

// ParseRequest decodes a request body. Handler and header strings are
// copies; Payload aliases body.
func ParseRequest(body []byte, l Limits) (Request, error) {
	var r Request
	var t uint64
	var n, nh int
	var name []byte
	rd := reader{b: body}
	if len(body) >= fixedRequest && len(body) >= fixedRequest+int(body[fixedRequest-1])+2 {
		// The fixed fields and the name are all there: read them
		// directly (the reader's checks are for frames cut short).
		r.Kind = Kind(body[0])
		r.ID = binary.BigEndian.Uint64(body[1:])
		t = binary.BigEndian.Uint64(body[9:])
		n = int(body[fixedRequest-1])
		name = body[fixedRequest : fixedRequest+n : fixedRequest+n]
		nh = int(binary.BigEndian.Uint16(body[fixedRequest+n:]))
		rd.b = body[fixedRequest+n+2:]
	} else {
		r.Kind = Kind(rd.u8("kind"))
		r.ID = rd.u64("id")
		t = rd.u64("timeout")
		n = int(rd.u8("name length"))
		name = rd.bytes(n, "name")
		nh = int(rd.u16("header count"))
		if rd.err != nil {
			return Request{}, rd.err
		}
	}
	if r.Kind < KindAMSend || r.Kind > KindUnary {
		return Request{}, malformed("unknown request kind %d", r.Kind)
	}
	if t > uint64(MaxTimeout) {
		return Request{}, malformed("timeout %d ns beyond the maximum", t)
	}
	r.Timeout = time.Duration(t)
	if n == 0 {
		return Request{}, malformed("empty handler name")
	}
	if l.Intern != nil {
		if known, ok := l.Intern(name); ok {
			r.Handler = known
		} else {
			r.Handler = string(name)
		}
	} else {
		r.Handler = string(name)
	}
	if nh > l.maxHeaders() {
		return Request{}, malformed("%d headers, limit %d", nh, l.maxHeaders())
	}
	if nh > 0 {
		r.Headers = make(map[string]string, nh)
		size := 0
		for range nh {
			k := rd.bytes(int(rd.u16("header key length")), "header key")
			vl := rd.u32("header value length")
			if rd.err == nil && int64(vl) > int64(l.maxHeaderBytes()) {
				return Request{}, malformed("header value of %d bytes, limit %d", vl, l.maxHeaderBytes())
			}
			v := rd.bytes(int(vl), "header value")
			if rd.err != nil {
				return Request{}, rd.err
			}
			size += len(k) + len(v)
			if size > l.maxHeaderBytes() {
				return Request{}, malformed("headers of more than %d bytes", l.maxHeaderBytes())
			}
			key := string(k)
			if _, dup := r.Headers[key]; dup {
				return Request{}, malformed("header %q repeated", key)
			}
			r.Headers[key] = string(v)
		}
	}
	r.Payload = rd.b
	return r, nil
}

// timeoutAt is where a request frame (length prefix included) holds its
// timeout.
const timeoutAt = HeaderLen + kindSize + idSize

// IsTimedRequest reports whether frame, a whole frame with its length
// prefix as AppendRequest makes it, is a request that carries a deadline,
// which StampTimeout may rewrite.
func IsTimedRequest(frame []byte) bool {
	return len(frame) >= timeoutAt+timeoutSize && Type(frame[lenSize+versionSize]) == TypeRequest &&
		binary.BigEndian.Uint64(frame[timeoutAt:]) != 0
}

// StampTimeout rewrites the timeout of a request frame (length prefix
// included; IsTimedRequest must hold) to left, the time its caller still
// waits, clamped as AppendRequest clamps it. Transports call it when the
// frame is handed to the network, so that the time it spent queued behind
// other frames is not given to the handler.
func StampTimeout(frame []byte, left time.Duration) {
	if left <= 0 {
		left = 1
	}
	binary.BigEndian.PutUint64(frame[timeoutAt:], uint64(min(left, MaxTimeout)))
}
