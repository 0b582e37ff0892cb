package transporttest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/velo-messenger/velo"
)

// testStreams: a stream over the transport delivers every item in order,
// small and large (up to 64 KiB, or what the transport carries), while
// unary calls share the connection; the receiver's Cancel reaches the
// sender, and CloseWithError's code reaches the receiver.
func testStreams(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	ctx := e.ctx
	maxItem := min(64<<10, a.tr.MaxFrame()/2, b.tr.MaxFrame()/2)

	t.Run("items-in-order", func(t *testing.T) {
		r, err := velo.OpenStream[[]byte](b.m, velo.StreamOptions{Window: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		s, err := velo.AttachStream[[]byte](ctx, a.m, r.Handle())
		if err != nil {
			t.Fatalf("AttachStream: %v", err)
		}
		const n = 2000
		size := func(i int) int { return 8 + i*37%maxItem }
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		wg.Go(func() {
			for i := range n {
				item := make([]byte, max(8, size(i)))
				binary.LittleEndian.PutUint64(item, uint64(i))
				if err := s.Send(ctx, item); err != nil {
					errs <- err
					return
				}
			}
			errs <- s.Close()
		})
		wg.Go(func() { // calls share the connection with the stream
			for range 50 {
				if _, err := a.m.Unary(hEcho).RawPayload([]byte("x")).Instance(b.id).Send(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
		got := 0
		for item, err := range r.All(ctx) {
			if err != nil {
				t.Fatalf("after %d items: %v", got, err)
			}
			if len(item) != max(8, size(got)) || binary.LittleEndian.Uint64(item) != uint64(got) {
				t.Fatalf("item %d: %d bytes, number %d", got, len(item), binary.LittleEndian.Uint64(item))
			}
			got++
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if got != n {
			t.Errorf("%d items, want %d", got, n)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		r, err := velo.OpenStream[[]byte](b.m, velo.StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := velo.AttachStream[[]byte](ctx, a.m, r.Handle())
		if err != nil {
			t.Fatal(err)
		}
		r.Cancel()
		for i := 0; ; i++ {
			err := s.Send(ctx, []byte("more"))
			if errors.Is(err, velo.ErrCanceled) {
				break
			}
			if err != nil || i > 100000 {
				t.Fatalf("Send after Cancel: %v, want ErrCanceled", err)
			}
		}
	})
	t.Run("close-with-error", func(t *testing.T) {
		r, err := velo.OpenStream[[]byte](b.m, velo.StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := velo.AttachStream[[]byte](ctx, a.m, r.Handle())
		if err != nil {
			t.Fatal(err)
		}
		s.CloseWithError(&velo.Error{Code: velo.CodeBusy, Message: "full"})
		if _, err := r.Recv(ctx); !errors.Is(err, velo.ErrBusy) || err == io.EOF {
			t.Errorf("Recv = %v, want ErrBusy", err)
		}
	})
}

// testLargeInterleaved: payloads of the largest size travel in chunks
// (they are over every transport's frame limit in the suite) while small
// calls go on the same connection; everything arrives intact, and small
// calls complete while a large one is in flight.
func testLargeInterleaved(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	ctx := e.ctx
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(ctx); err != nil {
		t.Fatalf("first call: %v", err)
	}
	big := make([]byte, maxPayload(b, hEcho))
	for i := range big {
		big[i] = byte(i * 31)
	}
	var largeDone sync.WaitGroup
	inFlight := make(chan struct{})
	errs := make(chan error, 4)
	largeDone.Go(func() {
		close(inFlight)
		for range 3 {
			got, err := a.m.Unary(hEcho).RawPayload(big).Instance(b.id).Send(ctx)
			if err != nil {
				errs <- err
				return
			}
			if len(got) != len(big) || got[len(got)-1] != big[len(big)-1] || got[12345] != big[12345] {
				errs <- errors.New("a large echo came back different")
				return
			}
		}
	})
	<-inFlight
	small := 0
	done := make(chan struct{})
	go func() { largeDone.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		if got, err := a.m.Unary(hEcho).RawPayload([]byte("small")).Instance(b.id).Send(ctx); err != nil || string(got) != "small" {
			t.Fatalf("a small call during the large ones: %q, %v", got, err)
		}
		small++
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if small == 0 {
		t.Error("no small call completed while the large ones were in flight")
	}
}

// testLargeReuse: large echoes one after another, each of other contents
// and a little smaller than the one before, with their memory reused on
// both sides (the handler's ReusePayload, the caller's ReleasePayload),
// and one response kept: every echo comes back byte-exact, and the kept
// one stays intact while later payloads are received.
func testLargeReuse(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	ctx := e.ctx
	size := min(maxPayload(b, hReuse), maxResponse(a))
	fill := func(n, seed int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*7 + seed*13 + i>>9)
		}
		return p
	}
	var first []byte
	for i := range 6 {
		want := fill(size-i*1000, i)
		got, err := a.m.Unary(hReuse).RawPayload(want).Instance(b.id).Send(ctx)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("echo %d of %d bytes came back different (%d bytes)", i, len(want), len(got))
		}
		if i == 0 {
			first = got // kept: never released
		} else {
			a.m.ReleasePayload(got)
		}
	}
	if !bytes.Equal(first, fill(size, 0)) {
		t.Error("the response kept changed while later ones were received")
	}
	// The suite's largest payloads travel in chunks on every transport:
	// responses 2 to 5 were received into the memory of the one before.
	if n := a.m.Stats().Totals.PayloadsReused; n < 4 {
		t.Errorf("%d of the caller's 6 responses were received into memory handed back; want at least 4", n)
	}
}
