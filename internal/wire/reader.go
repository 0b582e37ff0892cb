package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// FrameReader reads length-prefixed frames from a byte stream.
//
// A frame's buffer grows as its bytes arrive, so that a length prefix
// costs nothing until the bytes it announces are sent: a frame of at most
// readStep bytes is read into one buffer of its size, with no copy; a
// longer one starts with readStep bytes, and its buffer doubles each time
// the bytes sent fill it (the last step may grow it 2.5 times, to the
// frame's size). A peer that announces 16 MiB and sends a byte now and
// then holds readStep bytes of ours; one that has sent n bytes of a frame
// holds a buffer of at most max(2.5n, readStep), and the smaller ones it
// outgrew (less than n in all) are garbage.
//
// A read that fails with an error the stream recovers from (a read
// deadline that passed, os.ErrDeadlineExceeded) loses nothing: the bytes
// of the frame in progress are kept, and the next ReadFrame goes on from
// them. So a goroutine reading the stream may be interrupted, and another
// one take over.
type FrameReader struct {
	r    *bufio.Reader
	max  int
	step int // readStep; smaller in tests
	pre  [PrefixLen]byte
	npre int // bytes of pre read for the frame in progress
	n    int // the frame in progress' announced length once its prefix is read; 0 between frames

	place ChunkPlacer
	raw   io.Reader       // what r buffers: large frames are read from it straight (SetPlacer)
	bulk  bool            // the last frame read was large: r's buffer is bypassed for the next prefix
	head  [chunkHead]byte // a frame's first bytes, read first when place is set
	nhead int
	dst   []byte // where the rest of a placed chunk goes
	ndst  int    // bytes of dst read

	cur []byte // the frame in progress once read whole: its bytes so far
}

// ChunkPlacer gives the buffer that the n data bytes of the chunk frame
// of large frame id (one that is neither the first of its frame nor an
// abort) are read into, straight from the stream; nil: the frame is read
// whole, as any other. It is called by the goroutine that reads, before
// ReadFrame returns the frame, whose body then ends before the data.
type ChunkPlacer func(id uint64, n int) []byte

// chunkHead is what a chunk frame that may be placed holds before its
// data: version, type, id, flags.
const chunkHead = versionSize + typeSize + 8 + 1

// placeMin is the frame length above which a frame's head is read first
// when a ChunkPlacer is set, and its bytes straight from raw: frames up to
// it (all but the chunks of large frames, as a rule) are read whole,
// through r, as without a placer.
const placeMin = readStep

// chunkWhole is the longest chunk frame that is read into one buffer of
// its size when it is not placed (a first chunk, one the placer declined),
// not grown as its bytes arrive: the chunk frames of a large frame are at
// most this long.
const chunkWhole = 4 * readStep

// readStep is the first buffer of a frame longer than it, and the size up
// to which a frame is read in one allocation, without a copy.
const readStep = 64 << 10

// NewFrameReader reads frames of at most maxFrame bytes (after the prefix)
// from r. maxFrame <= 0 means DefaultMaxFrame.
func NewFrameReader(r *bufio.Reader, maxFrame int) *FrameReader {
	fr := &FrameReader{r: r, step: readStep}
	fr.SetMax(maxFrame)
	return fr
}

// SetMax changes the largest frame for the frames read after it
// (MaxHelloFrame until a connection's handshake is done, say); n <= 0
// means DefaultMaxFrame. Like ReadFrame, it must be called on the
// goroutine that reads.
func (fr *FrameReader) SetMax(n int) {
	if n <= 0 {
		n = DefaultMaxFrame
	}
	fr.max = n
}

// SetPlacer makes ReadFrame read the data of chunk frames where p says,
// for the frames read after it; raw is the reader that r buffers. The
// bytes of large frames (over placeMin) are read from raw straight
// into their buffer once r has none left, and after a large frame the
// next prefix and head are read from raw too, as many bytes as they take:
// else r's buffer would take in the data behind them, to copy it out
// again. Call it before the first ReadFrame.
func (fr *FrameReader) SetPlacer(p ChunkPlacer, raw io.Reader) { fr.place, fr.raw = p, raw }

// read reads into p: what r buffers, or when it has none and the stream
// carries large frames, straight from raw.
func (fr *FrameReader) read(p []byte, large bool) (int, error) {
	if fr.raw == nil || !large || fr.r.Buffered() > 0 {
		return fr.r.Read(p)
	}
	return fr.raw.Read(p)
}

// readFull reads len(p) bytes as read does, as io.ReadFull would.
func (fr *FrameReader) readFull(p []byte, large bool) (int, error) {
	n := 0
	for n < len(p) {
		k, err := fr.read(p[n:], large)
		n += k
		if err != nil {
			if err == io.EOF && n > 0 && n < len(p) {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// Max returns the largest frame ReadFrame accepts.
func (fr *FrameReader) Max() int { return fr.max }

// ReadFrame returns the next frame without its length prefix, in a new slice
// that the caller owns; for a chunk frame whose data a ChunkPlacer took,
// the frame without that data. A length over the maximum is refused with
// ErrFrameTooLarge before any allocation; a length too short to hold a
// header is refused with ErrMalformed. io.EOF means a clean end between
// frames; io.ErrUnexpectedEOF an end inside one.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	if v := fr.view(); v != nil {
		b := make([]byte, len(v))
		copy(b, v)
		return b, nil
	}
	return fr.readFrame()
}

// ReadFrameView is ReadFrame, except that a small frame the reader holds
// whole (the common case for small frames that arrive back to back) comes
// as a view of the reader's buffer, with view true: the caller may read
// it only until its next call on the reader or the bufio.Reader, and
// keeps a copy of whatever it needs after that.
func (fr *FrameReader) ReadFrameView() (b []byte, view bool, err error) {
	if v := fr.view(); v != nil {
		return v, true, nil
	}
	b, err = fr.readFrame()
	return b, false, err
}

// readFrame reads the next frame into a buffer of its own.
func (fr *FrameReader) readFrame() ([]byte, error) {
	if fr.n == 0 {
		for fr.npre < PrefixLen {
			k, err := fr.read(fr.pre[fr.npre:], fr.bulk)
			fr.npre += k
			if err != nil {
				if err == io.EOF && fr.npre > 0 {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
		n := FrameLen(fr.pre[:])
		fr.npre = 0 // a refused prefix is consumed, as an accepted one
		if n > fr.max {
			return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, fr.max)
		}
		if n < versionSize+typeSize {
			return nil, malformed("length %d is shorter than a frame header", n)
		}
		fr.n = n
		fr.bulk = n > placeMin
		if fr.place == nil || n <= placeMin {
			fr.cur = fr.alloc(n)
		}
	}
	if fr.cur == nil && fr.dst == nil {
		for fr.nhead < chunkHead {
			k, err := fr.read(fr.head[fr.nhead:], true)
			fr.nhead += k
			if err != nil {
				return nil, unexpected(err)
			}
		}
		fr.nhead = 0
		if dst := fr.placed(); dst != nil {
			fr.dst, fr.ndst = dst, 0
		} else {
			n := fr.n
			if FrameType(fr.head[:]) != TypeChunk || n > chunkWhole {
				n = min(n, fr.step)
			}
			fr.cur = append(make([]byte, 0, n), fr.head[:]...)
		}
	}
	if fr.dst != nil {
		k, err := fr.readFull(fr.dst[fr.ndst:], true)
		fr.ndst += k
		if err != nil {
			return nil, unexpected(err)
		}
		fr.dst, fr.n = nil, 0
		return append(make([]byte, 0, chunkHead), fr.head[:]...), nil
	}
	b, n := fr.cur, fr.n
	for {
		end := min(cap(b), n)
		k, err := fr.readFull(b[len(b):end], fr.bulk)
		b = b[:len(b)+k]
		if err != nil {
			fr.cur = b // kept for the next ReadFrame
			return nil, unexpected(err)
		}
		if len(b) == n {
			fr.cur, fr.n = nil, 0
			return b, nil
		}
		next := 2 * len(b)
		if next >= n-len(b)/2 {
			next = n // rather than a last step for a few bytes
		}
		grown := make([]byte, len(b), next)
		copy(grown, b)
		b = grown
	}
}

// view returns the next frame, consumed but still in r's buffer, when r
// holds all of it and it is small enough to be read whole (placeMin); nil
// otherwise, and readFrame reads it, or refuses its length, as it comes.
func (fr *FrameReader) view() []byte {
	if fr.n != 0 || fr.npre != 0 {
		return nil // a frame in progress
	}
	avail := fr.r.Buffered()
	if avail < PrefixLen {
		return nil
	}
	p, _ := fr.r.Peek(PrefixLen)
	n := FrameLen(p)
	if n > placeMin || n > fr.max || n < versionSize+typeSize || avail < PrefixLen+n {
		return nil
	}
	p, _ = fr.r.Peek(PrefixLen + n)
	fr.r.Discard(PrefixLen + n) // p stays valid until r reads again
	fr.bulk = false
	return p[PrefixLen:]
}

// alloc is the first buffer of a frame of n bytes: up to readStep, one of
// the frame's size; past it, one that doubles each time the bytes sent
// fill it, or that takes the whole frame when doubling would leave less
// than a half of it.
func (fr *FrameReader) alloc(n int) []byte { return make([]byte, 0, min(n, fr.step)) }

// placed asks the ChunkPlacer for the buffer of the data of the frame
// whose head was read, when it is a chunk that may be placed.
func (fr *FrameReader) placed() []byte {
	h := fr.head[:]
	if FrameType(h) != TypeChunk || h[chunkHead-1] & ^ChunkLast != 0 {
		return nil // not a chunk, or a first chunk, an abort, a bad one
	}
	n := fr.n - chunkHead
	dst := fr.place(binary.BigEndian.Uint64(h[versionSize+typeSize:]), n)
	if len(dst) != n {
		return nil
	}
	return dst
}

// unexpected is err for a stream that ended inside a frame.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
