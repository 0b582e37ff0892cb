package wire

import "encoding/binary"

// Chunk is a piece of a large frame (a request or a response, its length
// prefix removed) that travels as several chunk frames, so that other
// frames can go between them on the connection.
//
// Body layout:
//
//	id     uint64  the sender's number for the large frame, per connection
//	flags  uint8   ChunkFirst, ChunkLast, ChunkAbort
//	total  uint64  with ChunkFirst only: the large frame's length
//	data   the rest of the frame: the next bytes of the large frame
//
// The first chunk says how long the frame is, so that the receiver refuses
// one over its limit before it holds any of it. A sender that gives up
// half-way (its ctx ended) sends an abort, and the receiver drops what it
// holds of that frame.
type Chunk struct {
	ID    uint64
	Flags uint8
	Total uint64 // with ChunkFirst
	Data  []byte
}

// Chunk flags.
const (
	ChunkFirst uint8 = 1 << 0
	ChunkLast  uint8 = 1 << 1
	ChunkAbort uint8 = 1 << 2
)

// ChunkOverhead is the most a chunk frame adds to its data: the frame
// header, the id, the flags and the total.
const ChunkOverhead = HeaderLen + 8 + 1 + 8

// AppendChunk appends c as a whole frame.
func AppendChunk(b []byte, c *Chunk) []byte {
	b, at := begin(b, TypeChunk)
	b = binary.BigEndian.AppendUint64(b, c.ID)
	b = append(b, c.Flags)
	if c.Flags&ChunkFirst != 0 {
		b = binary.BigEndian.AppendUint64(b, c.Total)
	}
	b = append(b, c.Data...)
	return finish(b, at)
}

// FixLength rewrites the length prefix of the one frame in b after bytes
// were appended to it (a chunk's data added after AppendChunk).
func FixLength(b []byte) {
	binary.BigEndian.PutUint32(b, uint32(len(b)-lenSize))
}

// ParseChunk decodes a chunk body. Data aliases body.
func ParseChunk(body []byte) (Chunk, error) {
	rd := reader{b: body}
	c := Chunk{ID: rd.u64("chunk id"), Flags: rd.u8("chunk flags")}
	if rd.err != nil {
		return Chunk{}, rd.err
	}
	if c.Flags&^(ChunkFirst|ChunkLast|ChunkAbort) != 0 {
		return Chunk{}, malformed("chunk flags %#x", c.Flags)
	}
	if c.Flags&ChunkFirst != 0 {
		c.Total = rd.u64("chunk total")
		if rd.err != nil {
			return Chunk{}, rd.err
		}
	}
	c.Data = rd.b
	if c.Flags&ChunkAbort != 0 && (len(c.Data) > 0 || c.Flags != ChunkAbort) {
		return Chunk{}, malformed("an abort chunk with flags %#x and %d bytes", c.Flags, len(c.Data))
	}
	return c, nil
}
