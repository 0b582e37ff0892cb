package velo_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
)

type streamItem struct {
	N    int
	Text string
}

// streamPair is a receiver instance and a sender instance that know each
// other.
func streamPair(t *testing.T) (recv, send *velo.Messenger) {
	t.Helper()
	recv = newMessenger(t, velo.Options{})
	send = newMessenger(t, velo.Options{})
	if err := send.RegisterPeer(recv.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	return recv, send
}

// openAttached opens a stream on recv (window 0: the default) and
// attaches send to it as its sender.
func openAttached[T any](t *testing.T, ctx context.Context, recv, send *velo.Messenger, window int) (*velo.StreamReceiver[T], *velo.StreamSender[T]) {
	t.Helper()
	r, err := velo.OpenStream[T](recv, velo.StreamOptions{Window: window})
	if err != nil {
		t.Fatal(err)
	}
	s, err := velo.AttachStream[T](ctx, send, r.Handle())
	if err != nil {
		t.Fatal(err)
	}
	return r, s
}

// A stream of typed items arrives complete and in order, then io.EOF; a
// []byte stream carries its items as they are.
func TestStreamItemsInOrder(t *testing.T) {
	recv, send := streamPair(t)
	ctx := testCtx(t)
	r, err := velo.OpenStream[streamItem](recv, velo.StreamOptions{Window: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	errc := make(chan error, 1)
	go func() {
		s, err := velo.AttachStream[streamItem](ctx, send, r.Handle())
		if err != nil {
			errc <- err
			return
		}
		for i := range n {
			if err := s.Send(ctx, streamItem{N: i, Text: "tok"}); err != nil {
				errc <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		errc <- s.Close()
	}()
	next := 0
	for tk, err := range r.All(ctx) {
		if err != nil {
			t.Fatalf("after %d items: %v", next, err)
		}
		if tk.N != next || tk.Text != "tok" {
			t.Fatalf("item %d = %+v", next, tk)
		}
		next++
	}
	if next != n {
		t.Fatalf("%d items, want %d", next, n)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the end = %v, want io.EOF", err)
	}

	raw, s := openAttached[[]byte](t, ctx, recv, send, 0)
	for _, b := range [][]byte{{}, []byte("raw"), make([]byte, 100<<10)} {
		if err := s.Send(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := raw.Recv(ctx)
		if err != nil || len(got) != len(b) || string(got) != string(b) {
			t.Fatalf("raw item of %d bytes = %d bytes, %v", len(b), len(got), err)
		}
	}
	s.Close()
}

// A million 32-byte items arrive complete and in order (100 000 under the
// race detector, which slows each one down tenfold).
func TestStreamMillionItems(t *testing.T) {
	if testing.Short() {
		t.Skip("a million items")
	}
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	recv, send := streamPair(t)
	ctx := testCtx(t)
	r, err := velo.OpenStream[[]byte](recv, velo.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		s, err := velo.AttachStream[[]byte](ctx, send, r.Handle())
		if err != nil {
			errc <- err
			return
		}
		item := make([]byte, 32)
		for i := range n {
			binary.LittleEndian.PutUint64(item, uint64(i))
			if err := s.Send(ctx, item); err != nil {
				errc <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		errc <- s.Close()
	}()
	start := time.Now()
	got := 0
	for b, err := range r.All(ctx) {
		if err != nil {
			t.Fatalf("after %d items: %v", got, err)
		}
		if len(b) != 32 || binary.LittleEndian.Uint64(b) != uint64(got) {
			t.Fatalf("item %d = %x", got, b)
		}
		got++
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("%d items, want %d", got, n)
	}
	t.Logf("%d items of 32 B in %v", n, time.Since(start).Round(time.Millisecond))
}

// Many streams share one connection, in both directions at once, their
// items interleaved, and each arrives complete and in order.
func TestStreamsShareAConnection(t *testing.T) {
	a, b := streamPair(t)
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	const streams, n = 8, 2000
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	for i := range streams {
		recv, send := a, b
		if i%2 == 1 {
			recv, send = b, a
		}
		r, err := velo.OpenStream[streamItem](recv, velo.StreamOptions{Window: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			s, err := velo.AttachStream[streamItem](ctx, send, r.Handle())
			if err != nil {
				errs <- err
				return
			}
			for j := range n {
				if err := s.Send(ctx, streamItem{N: j, Text: fmt.Sprint(i)}); err != nil {
					errs <- err
					return
				}
			}
			s.Close()
		})
		wg.Go(func() {
			next := 0
			for it, err := range r.All(ctx) {
				if err != nil || it.N != next || it.Text != fmt.Sprint(i) {
					errs <- fmt.Errorf("stream %d, item %d: %+v, %v", i, next, it, err)
					return
				}
				next++
			}
			if next != n {
				errs <- fmt.Errorf("stream %d: %d items, want %d", i, next, n)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A receiver that does not read holds the sender back: Send waits once the
// window is used up, and goes on when the receiver reads.
func TestStreamFlowControl(t *testing.T) {
	recv, send := streamPair(t)
	ctx := testCtx(t)
	const window, item = 8 << 10, 1 << 10
	r, s := openAttached[[]byte](t, ctx, recv, send, window)
	payload := make([]byte, item)
	sent := 0
	for {
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := s.Send(sctx, payload)
		cancel()
		if err != nil {
			if !errors.Is(err, velo.ErrDeadlineExceeded) {
				t.Fatalf("Send %d: %v, want it to wait until its deadline", sent, err)
			}
			break
		}
		sent++
		if sent > 100 {
			t.Fatal("100 items went to a receiver that reads none")
		}
	}
	// The sender may overdraw by one item.
	if max := window/item + 1; sent > max {
		t.Fatalf("%d items of %d B went to a receiver that reads none, window %d B", sent, item, window)
	}
	t.Logf("%d items of %d B sent before the %d B window closed", sent, item, window)
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, payload) }()
	for range sent {
		if _, err := r.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Send after the receiver read: %v", err)
	}
	s.Close()
	r.Cancel()
}

// What a receiver that does not read holds is bounded by its window: with
// a 1 MiB window and 64 KiB items, the live heap of both instances (one
// process) grows by the window and one item, plus the connections'
// buffers, while the sender waits.
func TestStreamMemoryBound(t *testing.T) {
	recv, send := streamPair(t)
	ctx := testCtx(t)
	const window, item = 1 << 20, 64 << 10
	r, s := openAttached[[]byte](t, ctx, recv, send, window)
	defer r.Cancel()
	payload := make([]byte, item)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	sent := 0
	for {
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := s.Send(sctx, payload)
		cancel()
		if err != nil {
			break
		}
		sent++
	}
	time.Sleep(50 * time.Millisecond) // the last items reach the receiver
	grown := int64(heap()) - int64(before)
	t.Logf("%d items of 64 KiB sent to a receiver that reads none; live heap grew by %d KiB (window %d KiB)", sent, grown>>10, window>>10)
	// Beyond the window: each held item is a whole received frame (its
	// header, and the allocator's rounding of a 64 KiB+ object to pages:
	// about 12 %), and both connections' read and write buffers, grown to
	// carry 64 KiB frames, and the pooled frame buffers (about 800 KiB).
	if limit := int64(window*5/4 + item + 1<<20); grown > limit {
		t.Errorf("live heap grew by %d bytes, want at most 1.25 × the window, one item and 1 MiB (%d)", grown, limit)
	}
}

// Cancelling on the receiver fails the sender's sends with ErrCanceled.
func TestStreamCancel(t *testing.T) {
	recv, send := streamPair(t)
	ctx := testCtx(t)
	r, s := openAttached[streamItem](t, ctx, recv, send, 0)
	if err := s.Send(ctx, streamItem{N: 1}); err != nil {
		t.Fatal(err)
	}
	r.Cancel()
	if _, err := r.Recv(ctx); !errors.Is(err, velo.ErrCanceled) {
		t.Errorf("Recv after Cancel = %v, want ErrCanceled", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := s.Send(ctx, streamItem{N: 2})
		if errors.Is(err, velo.ErrCanceled) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Send after the receiver cancelled = %v, want ErrCanceled", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// CloseWithError ends the stream with the sender's error after the items
// sent before it, its code kept.
func TestStreamCloseWithError(t *testing.T) {
	recv, send := streamPair(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		err  error
		want error
	}{
		{&velo.Error{Code: velo.CodePermissionDenied, Message: "no more for you"}, velo.ErrPermissionDenied},
		{errors.New("disk on fire"), velo.ErrHandlerError},
	} {
		r, s := openAttached[streamItem](t, ctx, recv, send, 0)
		s.Send(ctx, streamItem{N: 7})
		s.CloseWithError(tc.err)
		if tk, err := r.Recv(ctx); err != nil || tk.N != 7 {
			t.Fatalf("first item = %+v, %v", tk, err)
		}
		_, err := r.Recv(ctx)
		var ve *velo.Error
		if !errors.Is(err, tc.want) || !errors.As(err, &ve) || !ve.Remote {
			t.Errorf("Recv after CloseWithError(%v) = %v, want %v, remote", tc.err, err, tc.want)
		}
		if tc.want == velo.ErrHandlerError && (ve == nil || ve.Message != "disk on fire") {
			t.Errorf("message = %q, want the sender's text", ve.Message)
		}
	}
}

// Attaching to a stream that is not open, or that has its sender, fails
// with ErrStreamUnknown and leaves the stream to its sender.
func TestStreamAttachRefused(t *testing.T) {
	recv, send := streamPair(t)
	third := newMessenger(t, velo.Options{})
	if err := third.RegisterPeer(recv.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	r, err := velo.OpenStream[streamItem](recv, velo.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bogus := r.Handle()
	bogus.ID++
	if _, err := velo.AttachStream[streamItem](ctx, send, bogus); !errors.Is(err, velo.ErrStreamUnknown) {
		t.Errorf("attach to a stream never opened = %v, want ErrStreamUnknown", err)
	}
	s, err := velo.AttachStream[streamItem](ctx, send, r.Handle())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := velo.AttachStream[streamItem](ctx, third, r.Handle()); !errors.Is(err, velo.ErrStreamUnknown) {
		t.Errorf("a second sender = %v, want ErrStreamUnknown", err)
	}
	if err := s.Send(ctx, streamItem{N: 1}); err != nil {
		t.Fatal(err)
	}
	if tk, err := r.Recv(ctx); err != nil || tk.N != 1 {
		t.Errorf("the first sender's item = %+v, %v", tk, err)
	}
	s.Close()
}

// Killing the sending process mid-stream ends the receiver's iteration
// with ErrPeerLost, within the keepalive bound.
func TestStreamSenderKilled(t *testing.T) {
	c := startChild(t)
	m := newMessenger(t, velo.Options{KeepaliveInterval: 200 * time.Millisecond, KeepaliveTimeout: time.Second})
	if err := m.RegisterPeer(c.Info); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	r, err := velo.OpenStream[streamItem](m, velo.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := r.Handle().MarshalBinary()
	if _, err := m.Unary("streamto").RawPayload(hb).Instance(c.Info.ID).Send(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	var killed time.Time
	for tk, err := range r.All(ctx) {
		if err != nil {
			if !errors.Is(err, velo.ErrPeerLost) {
				t.Fatalf("after %d items and the kill: %v, want ErrPeerLost", n, err)
			}
			if d := time.Since(killed); d > 2*time.Second {
				t.Errorf("the stream ended %v after the kill", d)
			}
			t.Logf("%d items, then ErrPeerLost %v after the kill", n, time.Since(killed).Round(time.Millisecond))
			return
		}
		if tk.N != n {
			t.Fatalf("item %d = %+v", n, tk)
		}
		n++
		if n == 100 {
			killed = time.Now()
			c.Kill()
		}
	}
	t.Fatal("the stream ended without an error after its sender was killed")
}

// Killing the receiving process fails the sender's Send, also one waiting
// for credit, with ErrPeerLost.
func TestStreamReceiverKilled(t *testing.T) {
	c := startChild(t)
	m := newMessenger(t, velo.Options{KeepaliveInterval: 200 * time.Millisecond, KeepaliveTimeout: time.Second})
	if err := m.RegisterPeer(c.Info); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	hb, err := m.Unary("streamfrom").Instance(c.Info.ID).Send(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var h velo.StreamHandle
	if err := h.UnmarshalBinary(hb); err != nil {
		t.Fatal(err)
	}
	s, err := velo.AttachStream[[]byte](ctx, m, h)
	if err != nil {
		t.Fatal(err)
	}
	item := make([]byte, 64<<10)
	errc := make(chan error, 1)
	go func() {
		for {
			if err := s.Send(ctx, item); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the window (1 MiB) is full: Send waits
	killed := time.Now()
	c.Kill()
	select {
	case err := <-errc:
		if !errors.Is(err, velo.ErrPeerLost) {
			t.Fatalf("Send after the receiver was killed = %v, want ErrPeerLost", err)
		}
		t.Logf("Send failed %v after the kill", time.Since(killed).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("Send still waiting 5 s after the receiver was killed")
	}
}

// streamFromHandler is the child's "streamfrom": it opens a stream that it
// never reads and returns its handle.
func streamFromHandler(m *velo.Messenger) *velo.HandlerBuilder {
	return velo.UnaryHandler("streamfrom", func(context.Context, *velo.Context) ([]byte, error) {
		r, err := velo.OpenStream[[]byte](m, velo.StreamOptions{})
		if err != nil {
			return nil, err
		}
		return r.Handle().MarshalBinary()
	})
}

// streamToHandler is the child's "streamto": it attaches to the stream
// whose handle is the payload and sends items, one a millisecond, until
// the stream ends.
func streamToHandler(m *velo.Messenger) *velo.HandlerBuilder {
	return velo.UnaryHandler("streamto", func(_ context.Context, c *velo.Context) ([]byte, error) {
		var h velo.StreamHandle
		if err := h.UnmarshalBinary(c.Payload); err != nil {
			return nil, err
		}
		ctx := context.Background()
		s, err := velo.AttachStream[streamItem](ctx, m, h)
		if err != nil {
			return nil, err
		}
		go func() {
			for i := 0; ; i++ {
				if s.Send(ctx, streamItem{N: i}) != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		return nil, nil
	})
}
