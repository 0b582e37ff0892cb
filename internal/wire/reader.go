package wire

import (
	"bufio"
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
	npre int    // bytes of pre read for the frame in progress
	cur  []byte // the frame in progress once its prefix is read: its bytes so far
	n    int    // cur's announced length
}

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

// Max returns the largest frame ReadFrame accepts.
func (fr *FrameReader) Max() int { return fr.max }

// ReadFrame returns the next frame without its length prefix, in a new slice
// that the caller owns. A length over the maximum is refused with
// ErrFrameTooLarge before any allocation; a length too short to hold a
// header is refused with ErrMalformed. io.EOF means a clean end between
// frames; io.ErrUnexpectedEOF an end inside one.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	if fr.cur == nil {
		for fr.npre < PrefixLen {
			k, err := fr.r.Read(fr.pre[fr.npre:])
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
		// Up to readStep, one buffer of the frame's size; past it, a
		// buffer that doubles each time the bytes sent fill it, or that
		// takes the whole frame when doubling would leave less than a
		// half of it.
		fr.cur, fr.n = make([]byte, 0, min(n, fr.step)), n
	}
	b, n := fr.cur, fr.n
	for {
		end := min(cap(b), n)
		k, err := io.ReadFull(fr.r, b[len(b):end])
		b = b[:len(b)+k]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			fr.cur = b // kept for the next ReadFrame
			return nil, err
		}
		if len(b) == n {
			fr.cur = nil
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
