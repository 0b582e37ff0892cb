package velo

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// Large payloads: a request or response frame longer than chunkAt goes as
// chunk frames (wire.TypeChunk) of at most that many bytes each, written
// one at a time, so that the frames of other calls go between them; the
// receiving session puts the frame back together and handles it as if it
// had come whole. See Options.MaxPayload.

// Bounds of what a session puts back together at once.
const (
	// maxAssemblies is the most large frames a peer may have half-sent
	// on one connection.
	maxAssemblies = 16
	// maxRefused is the most large frames, refused at their first chunk,
	// whose later chunks a session is still dropping.
	maxRefused = 64
)

// assembly is a large frame being put back together.
type assembly struct {
	total  int
	buf    []byte      // the frame (total bytes), once allocated
	ready  chan []byte // delivers buf: the allocation runs off the receive path
	held   [][]byte    // chunks that arrived before buf, not yet in it: parts of their frames
	nheld  int         // bytes in held
	filled int         // where in buf the first of held goes
	got    int         // bytes received: in buf, or held
	kept   []byte      // the kept buffer buf was cut from (payloads.take), with all of its capacity; nil: buf is its own
}

// whole returns the buffer the frame was received into, with all of its
// capacity.
func (a *assembly) whole() []byte {
	if a.kept != nil {
		return a.kept
	}
	return a.buf
}

// bigAlloc is the size above which a large frame's buffer is allocated on
// a goroutine of its own: making (and zeroing) 64 MiB takes milliseconds,
// which the connection's receive path would otherwise spend not reading
// the small frames between the chunks.
const bigAlloc = 4 << 20

// have reports whether buf is there, waiting for it if wait is set.
func (a *assembly) have(wait bool) bool {
	if a.buf == nil {
		var b []byte
		if wait {
			b = <-a.ready
		} else {
			select {
			case b = <-a.ready:
			default:
				return false
			}
		}
		a.buf = b[:a.total]
	}
	return true
}

// heldStep is how many bytes of the chunks held while the buffer was
// being made are moved into it per chunk received: a backlog of MiBs
// moves a piece at a time, at twice the rate chunks arrive, instead of
// holding the receive path (and the small frames behind it) for the
// milliseconds one copy of all of it takes.
const heldStep = 2 * ChunkSize

// maxHeld bounds the bytes of chunks held while a large frame's buffer is
// being made: past it, the receive path waits for the buffer, so that a
// receiver holds at most the payload and maxHeld, or one chunk if that is
// more (a whole-frame transport's chunks are of its frame limit), for
// each large frame.
const maxHeld = 8 << 20

// moveHeld moves held chunks into buf, at least max bytes of them if
// there are as many (all of them with max < 0). buf must be there.
func (a *assembly) moveHeld(max int) {
	moved := 0
	for len(a.held) > 0 && (max < 0 || moved < max) {
		h := a.held[0]
		a.filled += copy(a.buf[a.filled:], h)
		moved += len(h)
		a.nheld -= len(h)
		a.held[0] = nil
		a.held = a.held[1:]
	}
	if len(a.held) == 0 {
		a.held = nil
	}
}

// add takes the next data of the frame: into buf when it is there, else
// held, or, past maxHeld or at the last chunk, into buf once it is there.
func (a *assembly) add(data []byte, last bool) {
	if a.have(last || a.nheld > 0 && a.nheld+len(data) > maxHeld) {
		a.moveHeld(heldStep)
		copy(a.buf[a.got:], data) // after the held ones, which go before
	} else {
		a.held = append(a.held, data) // the frame it came in is ours to keep
		a.nheld += len(data)
	}
	a.got += len(data)
}

// place returns where the frame's next n bytes go, if buf is there and
// they fit; the caller reads them in and then calls placed.
func (a *assembly) place(n int) []byte {
	if a.got+n > a.total || !a.have(false) {
		return nil
	}
	a.moveHeld(heldStep)
	return a.buf[a.got : a.got+n : a.got+n]
}

// placed counts the n bytes read into what place returned.
func (a *assembly) placed(n int) { a.got += n }

// frame returns the frame once all of it came, with what was held moved
// in; nil before.
func (a *assembly) frame() []byte {
	if a.got != a.total || !a.have(true) {
		return nil
	}
	a.moveHeld(-1)
	return a.buf
}

// chunkState is a session's side of chunking; the receive path alone
// touches it (HandleFrame is called by one goroutine at a time).
type chunkState struct {
	assembling map[uint64]*assembly
	bytes      int                 // sum of the totals being assembled, and of those dropped whose buffer is still being made
	refused    map[uint64]struct{} // ids whose later chunks are dropped
	dropped    []*assembly         // aborted while their buffer was being made: charged to bytes until it is
	placed     *assembly           // the assembly the data of the chunk being read goes straight into (PlaceChunk)
	placedN    int
}

// settle releases the charge of the dropped assemblies whose buffers
// have been made, so that a peer that announces and aborts large frames in
// a loop cannot have more than MaxPayload being allocated at once.
func (cs *chunkState) settle() {
	keep := cs.dropped[:0]
	for _, a := range cs.dropped {
		select {
		case <-a.ready:
			cs.bytes -= a.total
		default:
			keep = append(keep, a)
		}
	}
	clear(cs.dropped[len(keep):])
	cs.dropped = keep
}

// chunkBufs holds the buffers chunk frames are encoded in.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, ChunkSize+wire.ChunkOverhead); return &b }}

// payloadLimit is the largest request or response frame the peer takes:
// its MaxPayload when it takes chunks, else its frame limit.
func (s *session) payloadLimit() int {
	if p := s.peerPayload.Load(); p > 0 {
		return int(p)
	}
	return s.maxFrame()
}

// chunkAt is the size above which a frame is chunked, and the largest
// chunk's data: ChunkSize, or less when the peer's frame limit is smaller.
// Zero: the peer takes no chunks.
func (s *session) chunkAt() int {
	if s.peerPayload.Load() == 0 {
		return 0
	}
	if s.whole {
		return max(s.maxFrame()-wire.ChunkOverhead, 1)
	}
	return max(min(ChunkSize, s.maxFrame()-wire.ChunkOverhead), 1)
}

// chunkPiece is the data of one chunk on connections that take chunks of
// ChunkSize frames: a chunk frame, its header included, is then 256 KiB.
// A stream transport reads its data straight into the large frame's
// buffer (PlaceChunk), so the size costs the receiver no buffer of its
// own; a small call behind a chunk waits for 256 KiB to pass (about
// 0.1 ms on loopback), and fewer, larger chunks cost less per byte: 64 KiB
// chunks took 1.3-1.5 times as long to echo 64 MiB over TCP.
const chunkPiece = 256<<10 - wire.ChunkOverhead + wire.PrefixLen

// chunkSize is the data of one chunk of a frame over chunkAt.
func (s *session) chunkSize() int {
	if s.whole {
		return s.chunkAt()
	}
	return min(chunkPiece, s.chunkAt())
}

// writeFrame hands the frame b (length prefix included) to the
// connection: whole, or in chunks when it is larger than chunkAt.
func (s *session) writeFrame(ctx context.Context, b []byte) error {
	if at := s.chunkAt(); at > 0 && len(b)-wire.PrefixLen > at {
		return s.writeChunked(ctx, b, s.chunkSize())
	}
	return s.conn.WriteFrame(ctx, b)
}

// writeChunked writes b's frame as chunks of size bytes.
func (s *session) writeChunked(ctx context.Context, b []byte, size int) error {
	return s.writeParts(ctx, b[wire.PrefixLen:], nil, size)
}

// writeLarge writes the frame whose body is head (a frame's encoding
// without its payload, length prefix included) followed by payload: in
// chunks when it is larger than chunkAt, without first copying the payload
// into one frame; it reports false, having written nothing, when the
// frame goes whole.
func (s *session) writeLarge(ctx context.Context, head, payload []byte) (bool, error) {
	at := s.chunkAt()
	if at == 0 || len(head)-wire.PrefixLen+len(payload) <= at {
		return false, nil
	}
	return true, s.writeParts(ctx, head[wire.PrefixLen:], payload, s.chunkSize())
}

// writeParts writes the large frame whose body is a followed by b as
// chunks of size bytes. A write that fails on its ctx after the first
// chunk went sends an abort, so that the peer drops what it holds; the
// frame is then not delivered, as when a whole frame is withdrawn.
func (s *session) writeParts(ctx context.Context, a, b []byte, size int) error {
	total := len(a) + len(b)
	id := s.chunkSeq.Add(1)
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	unyielded := yieldEvery - yieldAfter
	for off := 0; off < total; off += size {
		end := min(off+size, total)
		c := wire.Chunk{ID: id}
		if off == 0 {
			c.Flags, c.Total = wire.ChunkFirst, uint64(total)
		}
		if end == total {
			c.Flags |= wire.ChunkLast
		}
		// The chunk's data is [off, end) of a then b.
		f := wire.AppendChunk((*bp)[:0], &c)
		if off < len(a) {
			f = append(f, a[off:min(end, len(a))]...)
		}
		if end > len(a) {
			f = append(f, b[max(off, len(a))-len(a):end-len(a)]...)
		}
		wire.FixLength(f)
		*bp = f[:0]
		if err := s.conn.WriteFrame(ctx, f); err != nil {
			if off > 0 && isCtxErr(err) {
				actx, cancel := context.WithTimeout(context.Background(), time.Second)
				s.conn.WriteFrame(actx, wire.AppendChunk(nil, &wire.Chunk{ID: id, Flags: wire.ChunkAbort}))
				cancel()
			}
			return err
		}
		if unyielded += end - off; unyielded >= yieldEvery && end < total {
			unyielded = 0
			yieldCPU()
		}
	}
	return nil
}

// A large frame's writer yields its CPU (yieldCPU) once yieldAfter bytes
// of its chunks are written, and every yieldEvery bytes after that.
// Writing a large payload keeps a CPU busy, mostly in the kernel; on a
// kernel that does not preempt it there (PREEMPT_NONE, common on servers
// and VMs), a thread that a small call needs meanwhile, woken on that
// CPU, may wait for the scheduler's next tick: 4 ms at 250 Hz. Small calls
// on the connection of a 256 MiB echo over TCP had a p99 of 5-8 ms from
// those waits; yielding every 1 MiB (about 0.3 ms of writing) brought it
// under 2 ms in most runs, with the payloads' memory reused
// (docs/performance.md, "Large payloads and streams"). A frame
// of a few MiB is written before a tick would matter, and does not yield:
// with every process on one CPU, a yield per 1 MiB call made such calls
// slower.
const (
	yieldAfter = 4 << 20
	yieldEvery = 1 << 20
)

// PlaceChunk implements transport.ChunkPlacer: the data of a chunk of a
// large frame whose buffer is made goes straight into it, after the bytes
// received before; handleChunk then takes the chunk's head alone.
func (s *session) PlaceChunk(id uint64, n int) []byte {
	cs := &s.chunks
	a := cs.assembling[id]
	if a == nil || cs.placed != nil {
		return nil
	}
	b := a.place(n)
	if b != nil {
		cs.placed, cs.placedN = a, n
	}
	return b // nil: the frame comes whole, and handleChunk judges it
}

// handleChunk takes a chunk frame on the receive path. A large frame that
// is complete is handled as if it had come whole. One announced larger
// than MaxPayload, or beyond what the session assembles at once, is
// refused at its first chunk, before anything is allocated for it: a
// request gets ErrPayloadTooLarge, and its later chunks are dropped; the
// connection goes on. A chunk that breaks the protocol closes it.
func (s *session) handleChunk(body []byte) error {
	c, err := wire.ParseChunk(body)
	if err != nil {
		return err
	}
	cs := &s.chunks
	if len(cs.dropped) > 0 {
		cs.settle()
	}
	if c.Flags&wire.ChunkAbort != 0 {
		if a := cs.assembling[c.ID]; a != nil {
			delete(cs.assembling, c.ID)
			if a.buf == nil && a.ready != nil {
				cs.dropped = append(cs.dropped, a) // its buffer is still being made
			} else {
				cs.bytes -= a.total
			}
		}
		delete(cs.refused, c.ID)
		return nil
	}
	a := cs.assembling[c.ID]
	if p := cs.placed; p != nil {
		// The chunk's data was read into a's buffer (PlaceChunk).
		cs.placed = nil
		if p != a || len(c.Data) != 0 { // a is the assembly of c.ID
			return fmt.Errorf("velo: chunk %d is not the one placed", c.ID)
		}
		a.placed(cs.placedN)
		return s.chunkDone(c.ID, a, c.Flags&wire.ChunkLast != 0)
	}
	if c.Flags&wire.ChunkFirst != 0 {
		if a != nil {
			return fmt.Errorf("velo: chunk %d begins twice", c.ID)
		}
		limit := uint64(s.m.opts.MaxPayload)
		switch {
		case c.Total > limit:
			return s.refuseChunked(&c, limit, false)
		case uint64(cs.bytes)+c.Total > limit || len(cs.assembling)+len(cs.dropped) >= maxAssemblies:
			return s.refuseChunked(&c, limit, true) // for now: the call may try again
		case c.Total < uint64(len(c.Data)):
			return fmt.Errorf("velo: chunk %d announces %d bytes and carries %d", c.ID, c.Total, len(c.Data))
		}
		if cs.assembling == nil {
			cs.assembling = make(map[uint64]*assembly)
		}
		a = &assembly{total: int(c.Total)}
		if b := s.m.payloads.take(a.total); b != nil {
			// Every byte of it is received before the frame is handled.
			a.buf, a.kept = b[:a.total:a.total], b
		} else if a.total > bigAlloc {
			a.ready = make(chan []byte, 1)
			go func(n int) { a.ready <- make([]byte, 0, n) }(a.total)
		} else {
			a.buf = make([]byte, a.total)
		}
		cs.assembling[c.ID] = a
		cs.bytes += a.total
	} else if a == nil {
		if _, ok := cs.refused[c.ID]; ok {
			if c.Flags&wire.ChunkLast != 0 {
				delete(cs.refused, c.ID)
			}
			return nil
		}
		return fmt.Errorf("velo: chunk %d of a frame that did not begin", c.ID)
	}
	if a.got+len(c.Data) > a.total {
		return fmt.Errorf("velo: chunk %d carries more than the %d bytes it announced", c.ID, a.total)
	}
	last := c.Flags&wire.ChunkLast != 0
	a.add(c.Data, last)
	return s.chunkDone(c.ID, a, last)
}

// chunkDone handles the large frame id that a's buffer holds once its
// last chunk came.
func (s *session) chunkDone(id uint64, a *assembly, last bool) error {
	if !last {
		return nil
	}
	cs := &s.chunks
	delete(cs.assembling, id)
	cs.bytes -= a.total
	f := a.frame()
	if f == nil {
		return fmt.Errorf("velo: chunk %d ends after %d of the %d bytes it announced", id, a.got, a.total)
	}
	if t := wire.FrameType(f); t != wire.TypeRequest && t != wire.TypeResponse {
		return fmt.Errorf("velo: a chunked frame of type %d", t)
	}
	return s.handleFrame(f, a.whole(), false)
}

// refuseChunked refuses the large frame whose first chunk is c: a request
// that wants an answer gets ErrPayloadTooLarge, a response fails the call
// it answers with it, and the frame's later chunks are dropped.
func (s *session) refuseChunked(c *wire.Chunk, limit uint64, busy bool) error {
	cs := &s.chunks
	if c.Flags&wire.ChunkLast == 0 {
		if len(cs.refused) >= maxRefused {
			return fmt.Errorf("velo: %d large frames refused at once", len(cs.refused))
		}
		if cs.refused == nil {
			cs.refused = make(map[uint64]struct{})
		}
		cs.refused[c.ID] = struct{}{}
	}
	s.m.warn(s.m.peerLog, "velo: large frame refused", "peer", s.peerName(), "bytes", c.Total, "max_payload", limit, "busy", busy)
	msg := fmt.Sprintf("a frame of %d bytes; %s accepts at most %d (MaxPayload)", c.Total, s.m.id.Short(), limit)
	code, status := CodePayloadTooLarge, wire.StatusPayloadTooLarge
	if busy {
		msg = fmt.Sprintf("a frame of %d bytes; %s is receiving %d large frames from this connection (%d bytes in all, MaxPayload %d)",
			c.Total, s.m.id.Short(), len(s.chunks.assembling), s.chunks.bytes, limit)
		code, status = CodeBusy, wire.StatusBusy
	}
	d := c.Data
	switch wire.FrameType(d) {
	case wire.TypeRequest:
		// version, type, kind, id: the request's answer needs no more.
		if len(d) < 11 {
			return nil
		}
		req := wire.Request{Kind: wire.Kind(d[2]), ID: binary.BigEndian.Uint64(d[3:11])}
		if req.Kind.WantsResponse() {
			s.finish(newInbound(s, &req), nil, nil, newError(code, "", nil, "%s", msg))
		}
	case wire.TypeResponse:
		if len(d) < 10 {
			return nil
		}
		resp := wire.Response{ID: binary.BigEndian.Uint64(d[2:10]), Status: status, Error: msg}
		return s.HandleFrame(wire.AppendResponse(nil, &resp)[wire.PrefixLen:])
	}
	return nil
}
