package wire

import "encoding/binary"

// Response is the outcome of an AMSync or Unary request.
//
// Body layout:
//
//	id       uint64  the request's id
//	status   uint8   StatusOK or an error code
//	errlen   uint32
//	error    errlen bytes of UTF-8 text, empty on success
//	payload  the rest of the frame: the handler's result (Unary, success only)
type Response struct {
	ID      uint64
	Status  Status
	Error   string
	Payload []byte
}

// ResponseLen is the size of r's frame, length prefix included.
func ResponseLen(r *Response) int {
	return HeaderLen + responseFixed + len(r.Error) + len(r.Payload)
}

// AppendResponse appends r as a whole frame.
func AppendResponse(b []byte, r *Response) []byte {
	b, at := begin(b, TypeResponse)
	b = binary.BigEndian.AppendUint64(b, r.ID)
	b = append(b, byte(r.Status))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Error)))
	b = append(b, r.Error...)
	b = append(b, r.Payload...)
	return finish(b, at)
}

// ParseResponse decodes a response body. Error is a copy; Payload aliases
// body.
func ParseResponse(body []byte) (Response, error) {
	rd := reader{b: body}
	var r Response
	r.ID = rd.u64("id")
	r.Status = Status(rd.u8("status"))
	msg := rd.bytes(int(rd.u32("error length")), "error")
	if rd.err != nil {
		return Response{}, rd.err
	}
	if !r.Status.known() {
		return Response{}, malformed("unknown status %d", r.Status)
	}
	if len(msg) > 0 {
		r.Error = string(msg)
	}
	r.Payload = rd.b
	return r, nil
}
