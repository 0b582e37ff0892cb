package ucx

import (
	"encoding/binary"
	"fmt"

	"github.com/velo-messenger/velo/internal/wire"
)

// Batch messages: small data frames queued together for one connection
// travel as one message (one UCX send; over tcp, one system call), each
// frame after its length.
const (
	batchEntry = 4       // the length before each frame, little endian
	batchMax   = 4 << 10 // bytes of one batch message, below UCX's rendezvous threshold
	maxBatch   = 256     // frames in one batch message
)

// splitBatch cuts a batch message of count frames into them; each must be
// a frame (checkFrame with limit) and they must fill b exactly. The frames
// share b's memory, each capped to its own length.
func splitBatch(b []byte, count, limit int) ([][]byte, error) {
	if count < 1 || count > maxBatch {
		return nil, fmt.Errorf("velo: ucx: a batch of %d frames", count)
	}
	frames := make([][]byte, 0, count)
	for i := range count {
		if len(b) < batchEntry {
			return nil, fmt.Errorf("velo: ucx: a batch message ends after %d of its %d frames", i, count)
		}
		n := int(binary.LittleEndian.Uint32(b))
		if n > len(b)-batchEntry {
			return nil, fmt.Errorf("velo: ucx: frame %d of a batch message overruns it", i)
		}
		if err := checkFrame(n, limit); err != nil {
			return nil, err
		}
		frames = append(frames, b[batchEntry:batchEntry+n:batchEntry+n])
		b = b[batchEntry+n:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("velo: ucx: %d bytes after the frames of a batch message", len(b))
	}
	return frames, nil
}

// appendBatchEntry appends one frame of a batch message to b.
func appendBatchEntry(b, frame []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(frame)))
	return append(b, frame...)
}

// checkFrame reports a frame that no connection takes.
func checkFrame(n, limit int) error {
	if n < wire.HeaderLen-wire.PrefixLen {
		return fmt.Errorf("velo: ucx: frame of %d bytes is shorter than a frame header", n)
	}
	if n > limit {
		return fmt.Errorf("velo: ucx: frame of %d bytes, limit %d", n, limit)
	}
	return nil
}
