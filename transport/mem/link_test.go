package mem

import (
	"bufio"
	"encoding/binary"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// TestSplitWrites writes frames of many sizes through a faultConn in
// chunks that cut length prefixes and bodies anywhere, with half the
// frames dropped and some delayed: the other end reads whole frames, those
// not dropped, in order.
func TestSplitWrites(t *testing.T) {
	for _, chunk := range []int{1, 3, 5, 17, 1 << 20} {
		n := NewNetwork()
		n.Seed(11)
		n.Drop("a", "b", 0.5)
		n.DelayUpTo("a", "b", 2*time.Millisecond, 0.3)
		w, r := net.Pipe()
		c := newFaultConn(w, n, "a", "b")

		var stream []byte
		const frames = 200
		for i := range frames {
			body := make([]byte, 2+8+i*7)
			body[0], body[1] = wire.Version, byte(wire.TypePing)
			binary.BigEndian.PutUint64(body[2:], uint64(i))
			stream = binary.BigEndian.AppendUint32(stream, uint32(len(body)))
			stream = append(stream, body...)
		}
		wrote := make(chan error, 1)
		go func() {
			defer c.Close()
			for b := stream; len(b) > 0; {
				k := min(chunk, len(b))
				if _, err := c.Write(b[:k]); err != nil {
					wrote <- err
					return
				}
				b = b[k:]
			}
			// Let the held frames out before Close discards them.
			for c.inFlight.Load() > 0 {
				time.Sleep(time.Millisecond)
			}
			wrote <- nil
		}()

		fr := wire.NewFrameReader(bufio.NewReader(r), 1<<20)
		var got []uint64
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				break // the writer closed
			}
			seq := binary.BigEndian.Uint64(f[2:])
			if len(f) != 2+8+int(seq)*7 {
				t.Fatalf("chunk %d: frame %d of %d bytes, want %d", chunk, seq, len(f), 2+8+seq*7)
			}
			got = append(got, seq)
		}
		if err := <-wrote; err != nil {
			t.Fatalf("chunk %d: Write: %v", chunk, err)
		}
		if !slices.IsSorted(got) || len(got) < frames/4 || len(got) > frames*3/4 {
			t.Errorf("chunk %d: received %d of %d frames (half dropped), sorted %v", chunk, len(got), frames, slices.IsSorted(got))
		}
		r.Close()
	}
}
