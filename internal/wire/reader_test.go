package wire_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/velo-messenger/velo/internal/wire"
)

// newReader reads frames from b through a buffer of the smallest size bufio
// allows, so that frames straddle buffer refills.
func newReader(b []byte, maxFrame int) *wire.FrameReader {
	return wire.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(b), 16), maxFrame)
}

// prefix returns a length prefix announcing n bytes.
func prefix(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestFrameReaderSequence(t *testing.T) {
	const max = 64 << 10
	frames := [][]byte{
		wire.AppendRequest(nil, &goldenRequestValue),
		wire.AppendResponse(nil, &goldenResponseValue),
		wire.AppendCancel(nil, 1),
		wire.AppendPing(nil, false, 2),
		wire.AppendPing(nil, true, 2),
		wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, ID: 3, Handler: "big",
			// version, type, kind, id, timeout, name length, "big", header count
			Payload: seq(max - (1 + 1 + 1 + 8 + 8 + 1 + 3 + 2))}),
		wire.AppendResponse(nil, &wire.Response{ID: 4}),
		wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown, Message: "bye"}),
	}
	if n := len(frames[5]) - wire.PrefixLen; n != max {
		t.Fatalf("test setup: big frame of %d bytes, want %d", n, max)
	}
	stream := bytes.Join(frames, nil)

	sources := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		// DataErrReader returns io.EOF with the last bytes, not after them.
		"eof with data": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	}
	// Through a buffer of 16 bytes frames straddle refills; through one
	// of 1 MiB the small ones are whole in it, and taken in one step.
	for name, src := range sources {
		for _, size := range []int{16, 1 << 20} {
			t.Run(fmt.Sprintf("%s/buffer %d", name, size), func(t *testing.T) {
				readSequence(t, wire.NewFrameReader(bufio.NewReaderSize(src(), size), max), frames)
			})
		}
	}
}

// readSequence reads frames from fr, each as its own slice, then io.EOF.
func readSequence(t *testing.T, fr *wire.FrameReader, frames [][]byte) {
	t.Helper()
	var got [][]byte
	for i, want := range frames {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f, want[wire.PrefixLen:]) {
			t.Fatalf("frame %d: % .40x…, want % .40x…", i, f, want[wire.PrefixLen:])
		}
		if _, err := parseAny(f, wire.Limits{}); err != nil {
			t.Fatalf("frame %d does not parse: %v", i, err)
		}
		got = append(got, f)
	}
	// Each frame is the caller's own: reading on did not overwrite the
	// earlier ones.
	for i, f := range got {
		if !bytes.Equal(f, frames[i][wire.PrefixLen:]) {
			t.Errorf("frame %d changed after later reads", i)
		}
	}
	for range 2 {
		if f, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("after the last frame: %d bytes, %v; want io.EOF", len(f), err)
		}
	}
}

// interrupting returns os.ErrDeadlineExceeded before every read of its
// source, and then the next few bytes: a stream whose reader is
// interrupted everywhere, inside prefixes and bodies alike.
type interrupting struct {
	r    io.Reader
	next bool // the next Read reads
	k    int
}

func (r *interrupting) Read(b []byte) (int, error) {
	if !r.next {
		r.next = true
		return 0, os.ErrDeadlineExceeded
	}
	r.next = false
	r.k = r.k%7 + 1
	return r.r.Read(b[:min(len(b), r.k)])
}

// TestFrameReaderResumes: a read that fails with a deadline loses no byte;
// the next ReadFrame (another goroutine's, in a connection whose callers
// take turns reading it) goes on where it stopped.
func TestFrameReaderResumes(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := range 40 {
		f := wire.AppendResponse(nil, &wire.Response{ID: uint64(i), Payload: seq(i * 37)})
		stream = append(stream, f...)
		want = append(want, f[wire.PrefixLen:])
	}
	fr := wire.NewFrameReader(bufio.NewReaderSize(&interrupting{r: bytes.NewReader(stream)}, 16), 1<<20)
	interrupted := 0
	for i := 0; i < len(want); {
		f, err := fr.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			interrupted++
			continue
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f, want[i]) {
			t.Fatalf("frame %d: % .20x…, want % .20x…", i, f, want[i])
		}
		i++
	}
	if interrupted < len(want) {
		t.Fatalf("only %d interruptions: the test did not interrupt inside frames", interrupted)
	}
	if _, err := readOn(fr); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// readOn reads the next frame, reading on past the interruptions of an
// interrupting source.
func readOn(fr *wire.FrameReader) ([]byte, error) {
	for {
		f, err := fr.ReadFrame()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return f, err
		}
	}
}

func TestFrameReaderTooLarge(t *testing.T) {
	const max = 100
	next := wire.AppendPing(nil, false, 7)
	for _, n := range []uint32{max + 1, 1 << 20, wire.DefaultMaxFrame + 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32} {
		// A valid frame follows the oversized prefix. The reader must stop
		// right after the prefix: reading the next frame intact shows that
		// it neither read nor allocated the announced body.
		fr := newReader(append(prefix(n), next...), max)
		f, err := fr.ReadFrame()
		if !errors.Is(err, wire.ErrFrameTooLarge) {
			t.Fatalf("prefix %#x: %d bytes, %v; want ErrFrameTooLarge", n, len(f), err)
		}
		if f != nil {
			t.Errorf("prefix %#x: returned %d bytes with the error", n, len(f))
		}
		if f, err := fr.ReadFrame(); err != nil || !bytes.Equal(f, next[wire.PrefixLen:]) {
			t.Errorf("prefix %#x: the next frame reads as % x, %v", n, f, err)
		}
	}

	// Exactly the maximum is allowed.
	frame := append(prefix(max), make([]byte, max)...)
	frame[wire.PrefixLen] = wire.Version
	if f, err := newReader(frame, max).ReadFrame(); err != nil || len(f) != max {
		t.Errorf("frame of exactly the maximum: %d bytes, %v", len(f), err)
	}

	// The same with the whole frame in the buffer (the read of a first
	// frame filled it), where a small frame is taken in one step: the
	// limit holds there too.
	over := append(prefix(max+1), make([]byte, max+1)...)
	over[wire.PrefixLen] = wire.Version
	for _, c := range []struct {
		frame []byte
		want  error
	}{{frame, nil}, {over, wire.ErrFrameTooLarge}} {
		stream := append(slices.Clip(next), c.frame...)
		fr := wire.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), 1<<20), max)
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatalf("first frame: %v", err)
		}
		if f, err := fr.ReadFrame(); !errors.Is(err, c.want) || (err == nil && len(f) != len(c.frame)-wire.PrefixLen) {
			t.Errorf("frame of %d bytes after another in the buffer: %d bytes, %v; want %v", len(c.frame)-wire.PrefixLen, len(f), err, c.want)
		}
	}
}

func TestFrameReaderDefaultMax(t *testing.T) {
	for _, max := range []int{0, -1} {
		_, err := newReader(prefix(wire.DefaultMaxFrame+1), max).ReadFrame()
		if !errors.Is(err, wire.ErrFrameTooLarge) {
			t.Errorf("max %d, one byte over DefaultMaxFrame: %v, want ErrFrameTooLarge", max, err)
		}
		// At the default maximum the length is accepted; the stream then
		// ends inside the frame.
		_, err = newReader(prefix(wire.DefaultMaxFrame), max).ReadFrame()
		if err != io.ErrUnexpectedEOF {
			t.Errorf("max %d, DefaultMaxFrame announced: %v, want io.ErrUnexpectedEOF", max, err)
		}
	}
}

// TestFrameReaderTooLargeAllocatesNothing proves that a hostile length
// prefix costs nothing: refusing a 4 GiB announcement allocates only the
// error value.
func TestFrameReaderTooLargeAllocatesNothing(t *testing.T) {
	const runs = 1000
	// AllocsPerRun calls the function once more to warm up.
	stream := bytes.Repeat(prefix(math.MaxUint32), runs+1)
	fr := wire.NewFrameReader(bufio.NewReader(bytes.NewReader(stream)), 1024)
	read := func() {
		if _, err := fr.ReadFrame(); !errors.Is(err, wire.ErrFrameTooLarge) {
			panic(err) // not t.Fatal: AllocsPerRun may run on another goroutine in the future
		}
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	allocs := testing.AllocsPerRun(runs, read)
	runtime.ReadMemStats(&after)

	// The error (fmt.Errorf with two integers) takes a handful of small
	// allocations; the frame body none.
	if allocs > 5 {
		t.Errorf("%.1f allocations per refused frame, want at most 5", allocs)
	}
	if perRun := (after.TotalAlloc - before.TotalAlloc) / (runs + 1); perRun > 1024 {
		t.Errorf("%d bytes allocated per refused frame, want at most 1024", perRun)
	}
}

func TestFrameReaderShortLength(t *testing.T) {
	for _, n := range []uint32{0, 1} {
		f, err := newReader(append(prefix(n), 1, 1, 1), 1024).ReadFrame()
		if f != nil {
			t.Errorf("length %d: returned %d bytes with the error", n, len(f))
		}
		mustMalformed(t, err, "length shorter than a frame header")
	}
	// Two bytes hold a version and a type: the reader passes them on and
	// ParseHeader judges them.
	f, err := newReader(append(prefix(2), wire.Version, byte(wire.TypeCancel)), 1024).ReadFrame()
	if err != nil || len(f) != 2 {
		t.Errorf("length 2: %d bytes, %v", len(f), err)
	}
}

func TestFrameReaderEOF(t *testing.T) {
	if _, err := newReader(nil, 1024).ReadFrame(); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}

	// Cut a two-frame stream at every offset: a cut at a frame boundary is
	// a clean end, any other an unexpected one.
	first := wire.AppendResponse(nil, &goldenResponseValue)
	stream := append(bytes.Clone(first), wire.AppendCancel(nil, 9)...)
	for i := range len(stream) {
		fr := newReader(stream[:i], 1024)
		var err error
		frames := 0
		for err == nil {
			if _, err = fr.ReadFrame(); err == nil {
				frames++
			}
		}
		switch {
		case i == 0 || i == len(first):
			if err != io.EOF {
				t.Errorf("cut at %d, a frame boundary: %v, want io.EOF", i, err)
			}
		default:
			if err != io.ErrUnexpectedEOF {
				t.Errorf("cut at %d, inside a frame: %v, want io.ErrUnexpectedEOF", i, err)
			}
		}
		if want := min(i/len(first), 1); frames != want {
			t.Errorf("cut at %d: %d whole frames read, want %d", i, frames, want)
		}
	}
}

func TestFrameReaderPassesErrors(t *testing.T) {
	boom := errors.New("connection reset")
	frame := wire.AppendCancel(nil, 1)
	for _, at := range []int{0, 2, wire.PrefixLen, len(frame) - 1} {
		r := io.MultiReader(bytes.NewReader(frame[:at]), iotest.ErrReader(boom))
		_, err := wire.NewFrameReader(bufio.NewReader(r), 1024).ReadFrame()
		if !errors.Is(err, boom) {
			t.Errorf("error after %d bytes: %v, want %v", at, err, boom)
		}
	}
}

// TestFrameReaderGrowsAsBytesArrive: an announced length costs nothing
// until its bytes are sent. A frame announced at the maximum whose sender
// stops after k bytes has made the reader allocate 4.5k at most (its
// buffers double as they fill: up to 2.5k for the last, less than 2k for
// the others), and 64 KiB for a frame of which little was sent.
func TestFrameReaderGrowsAsBytesArrive(t *testing.T) {
	for _, sent := range []int{0, 1, 1000, 64 << 10, 64<<10 + 1, 1 << 20, 3<<20 + 5} {
		stream := append(prefix(wire.DefaultMaxFrame-1), wire.Version, byte(wire.TypeRequest))
		stream = append(stream, make([]byte, max(sent-2, 0))...)
		fr := wire.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), 64<<10), 0)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f, err := fr.ReadFrame()
		runtime.ReadMemStats(&after)
		if err != io.ErrUnexpectedEOF || f != nil {
			t.Fatalf("%d bytes sent of %d: %d bytes, %v; want io.ErrUnexpectedEOF", sent, wire.DefaultMaxFrame-1, len(f), err)
		}
		got := after.TotalAlloc - before.TotalAlloc
		bound := uint64(max(4*sent+sent/2, 64<<10) + 8<<10)
		t.Logf("%8d bytes sent of a 16 MiB frame: %8d bytes allocated (bound %d)", sent, got, bound)
		if got > bound {
			t.Errorf("%d bytes sent of a 16 MiB frame: %d bytes allocated, want at most %d", sent, got, bound)
		}
	}
}

// TestFrameReaderLongFrames: frames longer than the first buffer come out
// whole, whatever the reads the source makes, and the first buffer's size
// does not change what is read.
func TestFrameReaderLongFrames(t *testing.T) {
	var frames [][]byte
	for _, n := range []int{100, 64<<10 - 1, 64 << 10, 64<<10 + 1, 300<<10 + 3} {
		frames = append(frames, wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, ID: uint64(n), Handler: "h", Payload: seq(n)}))
	}
	stream := bytes.Join(frames, nil)
	for name, src := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
	} {
		for _, step := range []int{1, 7, 4096, 64 << 10} {
			fr := wire.NewFrameReader(bufio.NewReaderSize(src(), 16), 1<<20)
			wire.SetStep(fr, step)
			for i, want := range frames {
				f, err := fr.ReadFrame()
				if err != nil || !bytes.Equal(f, want[wire.PrefixLen:]) {
					t.Fatalf("%s, step %d, frame %d: %d bytes, %v; want the %d bytes sent", name, step, i, len(f), err, len(want)-wire.PrefixLen)
				}
			}
			if _, err := fr.ReadFrame(); err != io.EOF {
				t.Fatalf("%s, step %d: after the last frame: %v, want io.EOF", name, step, err)
			}
		}
	}
}

// TestFrameReaderSmallFrameOneAllocation: a frame up to the first step is
// read with one allocation, of its size.
func TestFrameReaderSmallFrameOneAllocation(t *testing.T) {
	for _, n := range []int{2, 100, 64 << 10} {
		frame := append(prefix(uint32(n)), make([]byte, n)...)
		frame[wire.PrefixLen] = wire.Version
		stream := bytes.Repeat(frame, 102)
		fr := wire.NewFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), 128<<10), 0)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := fr.ReadFrame(); err != nil {
				panic(err)
			}
		})
		if allocs != 1 {
			t.Errorf("frame of %d bytes: %.1f allocations, want 1", n, allocs)
		}
	}
}

// TestFrameReaderSetMax: the limit changes for the next frames, and a
// frame over it is refused before anything is read of it.
func TestFrameReaderSetMax(t *testing.T) {
	big := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, ID: 1, Handler: "h", Payload: seq(wire.MaxHelloFrame)})
	small := wire.AppendPing(nil, false, 1)
	stream := bytes.Join([][]byte{small, big, big}, nil)
	fr := newReader(stream, 0)
	if fr.Max() != wire.DefaultMaxFrame {
		t.Fatalf("Max = %d, want DefaultMaxFrame", fr.Max())
	}
	fr.SetMax(wire.MaxHelloFrame)
	if f, err := fr.ReadFrame(); err != nil || !bytes.Equal(f, small[wire.PrefixLen:]) {
		t.Fatalf("small frame under MaxHelloFrame: %d bytes, %v", len(f), err)
	}
	if _, err := fr.ReadFrame(); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("frame of %d bytes under MaxHelloFrame: %v, want ErrFrameTooLarge", len(big)-wire.PrefixLen, err)
	}

	// The same stream, with the limit raised after the first frame (the
	// handshake done): the big frames read whole.
	fr = newReader(stream, 0)
	fr.SetMax(wire.MaxHelloFrame)
	if _, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	fr.SetMax(0)
	for range 2 {
		if f, err := fr.ReadFrame(); err != nil || !bytes.Equal(f, big[wire.PrefixLen:]) {
			t.Fatalf("big frame after SetMax(0): %d bytes, %v", len(f), err)
		}
	}
}

// TestFrameReaderPlacesChunks: with a ChunkPlacer, the data of a chunk
// that is neither first nor an abort goes straight into the buffer the
// placer gives, and ReadFrame returns the chunk without it; every other
// frame (a first chunk, one the placer declines, a large frame of another
// type, small frames between them) comes whole, in order, from any mix of
// buffered and direct reads, interrupted anywhere.
func TestFrameReaderPlacesChunks(t *testing.T) {
	chunk := func(id uint64, flags uint8, total uint64, n int) []byte {
		return wire.AppendChunk(nil, &wire.Chunk{ID: id, Flags: flags, Total: total, Data: seq(n)})
	}
	small := wire.AppendResponse(nil, &wire.Response{ID: 1, Payload: seq(40)})
	large := wire.AppendResponse(nil, &wire.Response{ID: 2, Payload: seq(100 << 10)})
	medium := wire.AppendResponse(nil, &wire.Response{ID: 3, Payload: seq(10 << 10)})
	frames := [][]byte{
		small,
		chunk(9, wire.ChunkFirst, 400000, 70000), // first: whole
		chunk(9, 0, 0, 90000),                    // placed
		small,
		chunk(7, 0, 0, 80000),              // declined: whole
		chunk(9, wire.ChunkLast, 0, 75000), // placed
		large,
		chunk(9, 0, 0, 60000), // not over 64 KiB: whole
		medium,
		small,
	}
	placedAt := map[int]bool{2: true, 5: true}
	var stream []byte
	for _, f := range frames {
		stream = append(stream, f...)
	}
	sources := map[string]func() io.Reader{
		"whole":        func() io.Reader { return bytes.NewReader(stream) },
		"one byte":     func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":         func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"interrupting": func() io.Reader { return &interrupting{r: bytes.NewReader(stream)} },
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			raw := src()
			fr := wire.NewFrameReader(bufio.NewReaderSize(raw, 16), 1<<20)
			var bufs [][]byte
			fr.SetPlacer(func(id uint64, n int) []byte {
				if id != 9 {
					return nil
				}
				b := make([]byte, n)
				bufs = append(bufs, b)
				return b
			}, raw)
			for i, want := range frames {
				f, err := readOn(fr)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				body := want[wire.PrefixLen:]
				if !placedAt[i] {
					if !bytes.Equal(f, body) {
						t.Fatalf("frame %d: %d bytes % .24x…, want it whole: %d bytes % .24x…", i, len(f), f, len(body), body)
					}
					continue
				}
				c, err := wire.ParseChunk(f[2:])
				if err != nil || c.ID != 9 || len(c.Data) != 0 {
					t.Fatalf("placed frame %d: chunk %d with %d bytes, %v; want chunk 9 without its data", i, c.ID, len(c.Data), err)
				}
				wc, _ := wire.ParseChunk(body[2:])
				if c.Flags != wc.Flags {
					t.Fatalf("placed frame %d: flags %#x, want %#x", i, c.Flags, wc.Flags)
				}
				if len(bufs) == 0 || !bytes.Equal(bufs[len(bufs)-1], wc.Data) {
					t.Fatalf("placed frame %d: its data did not land in the placer's buffer", i)
				}
			}
			if len(bufs) != len(placedAt) {
				t.Fatalf("%d buffers placed, want %d", len(bufs), len(placedAt))
			}
			if _, err := readOn(fr); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

// countingReader counts the reads made of r.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(b []byte) (int, error) {
	c.reads++
	return c.r.Read(b)
}

// TestFrameReaderPlacerLeavesSmallFramesAlone: with a ChunkPlacer set,
// frames up to 64 KiB (requests, answers, stream items) are read through
// the buffer as without one, in as few reads of the stream; only larger
// frames are read head first.
func TestFrameReaderPlacerLeavesSmallFramesAlone(t *testing.T) {
	var stream []byte
	for i := range 200 {
		stream = append(stream, wire.AppendResponse(nil, &wire.Response{ID: uint64(i), Payload: seq(5<<10 + i*200)})...)
	}
	reads := func(place bool) int {
		src := &countingReader{r: bytes.NewReader(stream)}
		fr := wire.NewFrameReader(bufio.NewReaderSize(src, 64<<10), 1<<20)
		if place {
			fr.SetPlacer(func(uint64, int) []byte { return nil }, src)
		}
		for i := range 200 {
			if _, err := fr.ReadFrame(); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
		}
		return src.reads
	}
	without, with := reads(false), reads(true)
	if with != without {
		t.Fatalf("%d reads of the stream with a placer, %d without: small frames should not be read head first", with, without)
	}
}
