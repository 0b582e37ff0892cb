package velo_test

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport/tcp"
)

// A 256 MiB unary echo (64 MiB under the race detector) between two
// messengers over TCP completes intact, in chunks, while small calls on
// the same connection go on between the chunks.
func TestLargePayloadEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("moves hundreds of MiB")
	}
	size := 256 << 20
	if raceEnabled {
		size = 64 << 20
	}
	a, b := streamPair(t)
	mustRegister(t, a, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }))
	ctx := testCtx(t)
	// The connection is open before the large call.
	if _, err := b.Unary("echo").Instance(a.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, size)
	for i := 0; i < len(big); i += 4096 {
		big[i] = byte(i >> 12)
	}
	stop := make(chan struct{})
	t0 := time.Now()
	var small []time.Duration
	var smallErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if _, err := b.Unary("echo").RawPayload([]byte("small")).Instance(a.InstanceID()).Send(ctx); err != nil {
				smallErr = err
				return
			}
			small = append(small, time.Since(start))
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Logf("a small call took %v, ending %v after the test began", d, time.Since(t0))
			}
		}
	})
	start := time.Now()
	got, err := b.Unary("echo").RawPayload(big).Instance(a.InstanceID()).Send(ctx)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("echo of %d MiB: %d bytes, %v", size>>20, len(got), err)
	}
	if smallErr != nil {
		t.Fatalf("a small call during the large one: %v", smallErr)
	}
	if len(small) < 10 {
		t.Errorf("%d small calls went through during the %v the large one took", len(small), took)
	}
	slices.Sort(small)
	t.Logf("%d MiB echoed in %v (%.0f MB/s each way); %d small calls meanwhile, p50 %v, p99 %v, max %v",
		size>>20, took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, len(small),
		small[len(small)/2], small[len(small)*99/100], small[len(small)-1])
}

// A peer that announces a 100 GiB request is refused at its first chunk,
// before anything is allocated: its call gets ErrPayloadTooLarge, the rest
// of its chunks are dropped, and the connection serves the next request.
func TestLargePayloadRefusedBeforeAllocation(t *testing.T) {
	m := newMessenger(t, velo.Options{})
	mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }))
	c, err := hostileDial(t, m.PeerInfo().Addresses[tcp.Name], true)
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	head := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 7, Handler: "echo", Payload: make([]byte, 1000)})
	var frames []byte
	frames = wire.AppendChunk(frames, &wire.Chunk{ID: 1, Flags: wire.ChunkFirst, Total: 100 << 30, Data: head[wire.PrefixLen:]})
	frames = wire.AppendChunk(frames, &wire.Chunk{ID: 1, Data: make([]byte, 64<<10)})
	frames = wire.AppendChunk(frames, &wire.Chunk{ID: 1, Flags: wire.ChunkLast, Data: make([]byte, 64<<10)})
	frames = wire.AppendRequest(frames, &wire.Request{Kind: wire.KindUnary, ID: 8, Handler: "echo", Payload: []byte("after")})
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []struct {
		id     uint64
		status wire.Status
	}{{7, wire.StatusPayloadTooLarge}, {8, wire.StatusOK}} {
		if r := readRawResponse(t, c); r.ID != want.id || r.Status != want.status {
			t.Fatalf("response %+v; want id %d status %v", r, want.id, want.status)
		}
	}
	if grown := int64(heap()) - int64(before); grown > 8<<20 {
		t.Errorf("live heap grew by %d bytes for a refused 100 GiB announce", grown)
	}
}

// TestLargePayloadChunksFromARawPeer: chunks a peer writes by hand are put
// back together over TCP, where the transport reads their data straight
// into the frame's buffer, and answered; a chunk that carries more than
// its frame announced closes that connection (a broken protocol), and the
// messenger goes on answering others.
func TestLargePayloadChunksFromARawPeer(t *testing.T) {
	m := newMessenger(t, velo.Options{})
	mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }))
	addr := m.PeerInfo().Addresses[tcp.Name]
	payload := make([]byte, 700<<10)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	body := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 7, Handler: "echo", Payload: payload})[wire.PrefixLen:]
	// Chunks of 100 KiB, 300 KiB and the rest: the later two are over
	// 64 KiB, so their data is placed.
	cuts := []int{0, 100 << 10, 400 << 10, len(body)}
	var frames []byte
	for i := 1; i < len(cuts); i++ {
		ch := wire.Chunk{ID: 1, Data: body[cuts[i-1]:cuts[i]]}
		if i == 1 {
			ch.Flags, ch.Total = wire.ChunkFirst, uint64(len(body))
		}
		if i == len(cuts)-1 {
			ch.Flags |= wire.ChunkLast
		}
		frames = wire.AppendChunk(frames, &ch)
	}
	c, err := hostileDial(t, addr, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The answer comes whole: this peer's hello did not say it takes
	// chunks.
	if r := readRawResponse(t, c); r.ID != 7 || r.Status != wire.StatusOK || !bytes.Equal(r.Payload, payload) {
		t.Fatalf("answer id %d status %v, %d bytes; want the %d bytes sent", r.ID, r.Status, len(r.Payload), len(payload))
	}

	// A second chunk that carries more than the first announced.
	frames = wire.AppendChunk(nil, &wire.Chunk{ID: 2, Flags: wire.ChunkFirst, Total: 200 << 10, Data: body[:100<<10]})
	frames = wire.AppendChunk(frames, &wire.Chunk{ID: 2, Data: make([]byte, 150<<10)})
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	if f, err := readRawFrame(c); err == nil {
		// A goaway may come first; then the connection ends.
		if typ, _, _ := wire.ParseHeader(f); typ != wire.TypeGoAway {
			t.Fatalf("after an overrunning chunk: a frame of type %v; want the connection closed", typ)
		}
		if _, err := readRawFrame(c); err == nil {
			t.Fatal("after an overrunning chunk the connection goes on")
		}
	}
	c.Close()
	// Others are still answered.
	c2, err := hostileDial(t, addr, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write(wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 9, Handler: "echo", Payload: []byte("after")})); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r := readRawResponse(t, c2); r.ID != 9 || string(r.Payload) != "after" {
		t.Fatalf("another connection's call: %+v", r)
	}
}

// A large call whose ctx ends half-way is withdrawn: the peer drops what it
// holds of it (an abort chunk), its handler never runs, and the connection
// goes on.
func TestLargePayloadWithdrawn(t *testing.T) {
	a, b := streamPair(t)
	var ran atomic.Int32
	mustRegister(t, a, velo.UnaryHandler("count", func(_ context.Context, c *velo.Context) ([]byte, error) {
		ran.Add(1)
		return nil, nil
	}))
	ctx := testCtx(t)
	if _, err := b.Unary("count").Instance(a.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	ok, withdrawn, unknown := 0, 0, 0
	for range 5 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
		_, err := b.Unary("count").RawPayload(make([]byte, 64<<20)).Instance(a.InstanceID()).Send(cctx)
		cancel()
		switch {
		case err == nil:
			ok++
		case velo.NotDelivered(err):
			withdrawn++
		default:
			unknown++
		}
	}
	if _, err := b.Unary("count").Instance(a.InstanceID()).Send(ctx); err != nil {
		t.Fatalf("a call after the large ones: %v", err)
	}
	t.Logf("of 5 large calls cut short after 2 ms: %d answered, %d withdrawn, %d of unknown outcome", ok, withdrawn, unknown)
	// Withdrawn calls never ran; those of unknown outcome may have.
	if got := int(ran.Load()); got < 2+ok || got > 2+ok+unknown {
		t.Errorf("the handler ran %d times, want %d to %d", got, 2+ok, 2+ok+unknown)
	}
}
