package wire

import (
	"bufio"
	"fmt"
	"io"
)

// FrameReader reads length-prefixed frames from a byte stream.
type FrameReader struct {
	r   *bufio.Reader
	max int
	pre [PrefixLen]byte
}

// NewFrameReader reads frames of at most maxFrame bytes (after the prefix)
// from r. maxFrame <= 0 means DefaultMaxFrame.
func NewFrameReader(r *bufio.Reader, maxFrame int) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{r: r, max: maxFrame}
}

// ReadFrame returns the next frame without its length prefix, in a new slice
// that the caller owns. A length over the maximum is refused with
// ErrFrameTooLarge before any allocation; a length too short to hold a
// header is refused with ErrMalformed. io.EOF means a clean end between
// frames; io.ErrUnexpectedEOF an end inside one.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.pre[:]); err != nil {
		return nil, err
	}
	n := FrameLen(fr.pre[:])
	if n > fr.max {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if n < versionSize+typeSize {
		return nil, malformed("length %d is shorter than a frame header", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}
