package velo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
)

// pattern returns n bytes that differ from one seed to another at every
// position, so that bytes left over from another payload show.
func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed*13 + i>>9)
	}
	return b
}

// reuseEcho registers, on m, an echo handler whose payloads' memory is
// reused.
func reuseEcho(t *testing.T, m *velo.Messenger) {
	t.Helper()
	mustRegister(t, m, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}).ReusePayload())
}

// Large echoes over TCP whose memory is handed back on both sides
// (ReusePayload on the server, ReleasePayload on the client) arrive
// byte-exact, one payload after another of different contents and sizes,
// and later ones are received into the memory of earlier ones.
func TestReusePayloadEchoes(t *testing.T) {
	srv, cli := streamPair(t)
	reuseEcho(t, srv)
	ctx := testCtx(t)
	const calls = 8
	for i := range calls {
		want := pattern(1<<20-i*1000, i)
		got, err := cli.Unary("echo").RawPayload(want).Instance(srv.InstanceID()).Send(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echo %d: %d bytes (want %d), equal %v, %v", i, len(got), len(want), bytes.Equal(got, want), err)
		}
		cli.ReleasePayload(got)
	}
	// Each response after the first went into the memory of the one before.
	if st := cli.Stats().Totals; st.PayloadsReused != calls-1 || st.PayloadBytesKept == 0 {
		t.Errorf("caller: %d of %d responses reused memory, %d bytes kept; want %d and some", st.PayloadsReused, calls, st.PayloadBytesKept, calls-1)
	}
	// The server gives a request's memory back once its response is
	// written, which may be just after the caller sent the next request.
	if st := srv.Stats().Totals; st.PayloadsReused < calls/2 {
		t.Errorf("handler: %d of %d requests reused memory; want at least %d", st.PayloadsReused, calls, calls/2)
	}
}

// Concurrent large calls with reuse on both sides never share memory: each
// caller gets its own payload back, byte-exact.
func TestReusePayloadConcurrent(t *testing.T) {
	srv, cli := streamPair(t)
	reuseEcho(t, srv)
	ctx := testCtx(t)
	inParallel(t, 4, func(g int) error {
		for i := range 6 {
			got, err := echoed(ctx, cli, srv, "echo", pattern(600<<10+g*4096, g*100+i))
			if err != nil {
				return fmt.Errorf("call %d: %w", i, err)
			}
			cli.ReleasePayload(got)
		}
		return nil
	})
	if r := cli.Stats().Totals.PayloadsReused + srv.Stats().Totals.PayloadsReused; r == 0 {
		t.Error("no payload memory was reused")
	}
}

// Without ReusePayload a handler owns its payloads, and a caller owns the
// responses it does not release: what they keep stays intact however many
// large payloads come after.
func TestPayloadsKeptStayIntact(t *testing.T) {
	srv, cli := streamPair(t)
	var mu sync.Mutex
	var kept [][]byte
	mustRegister(t, srv, velo.UnaryHandler("keep", func(_ context.Context, c *velo.Context) ([]byte, error) {
		mu.Lock()
		kept = append(kept, c.Payload)
		mu.Unlock()
		return c.Payload, nil
	}))
	reuseEcho(t, srv)
	ctx := testCtx(t)
	var mine [][]byte // responses the caller keeps
	for i := range 6 {
		name := "keep"
		if i%2 == 1 {
			name = "echo"
		}
		want := pattern(1<<20, i)
		got, err := cli.Unary(name).RawPayload(want).Instance(srv.InstanceID()).Send(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("call %d (%s): %d bytes, equal %v, %v", i, name, len(got), bytes.Equal(got, want), err)
		}
		if i%3 == 0 {
			mine = append(mine, got)
		} else {
			cli.ReleasePayload(got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for j, p := range kept {
		if !bytes.Equal(p, pattern(1<<20, 2*j)) {
			t.Errorf("the payload handler \"keep\" kept from call %d changed", 2*j)
		}
	}
	for j, p := range mine {
		if !bytes.Equal(p, pattern(1<<20, 3*j)) {
			t.Errorf("the response the caller kept from call %d changed", 3*j)
		}
	}
}

// ReleasePayload ignores what velo did not hand out in chunks, and a
// payload released twice is kept once.
func TestReleasePayloadIgnoresOthers(t *testing.T) {
	srv, cli := streamPair(t)
	reuseEcho(t, srv)
	ctx := testCtx(t)
	cli.ReleasePayload(nil)
	cli.ReleasePayload(make([]byte, 2<<20))
	small, err := cli.Unary("echo").RawPayload([]byte("small")).Instance(srv.InstanceID()).Send(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cli.ReleasePayload(small)
	if st := cli.Stats().Totals; st.PayloadBytesKept != 0 {
		t.Fatalf("%d bytes kept for slices velo did not receive in chunks", st.PayloadBytesKept)
	}
	big, err := cli.Unary("echo").RawPayload(pattern(1<<20, 1)).Instance(srv.InstanceID()).Send(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cli.ReleasePayload(big)
	once := cli.Stats().Totals.PayloadBytesKept
	cli.ReleasePayload(big)
	cli.ReleasePayload(big[:10])
	if st := cli.Stats().Totals; once < 1<<20 || st.PayloadBytesKept != once {
		t.Errorf("kept %d bytes after one release, %d after three; want at least 1 MiB, then the same", once, st.PayloadBytesKept)
	}
}

// A handler built with ReusePayload that also hands its payload to
// ReleasePayload (which it must not) does not get its memory reused while
// its response is still being written from it: concurrent echoes stay
// byte-exact.
func TestReusePayloadIgnoresRelease(t *testing.T) {
	srv, cli := streamPair(t)
	mustRegister(t, srv, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		c.Msg.ReleasePayload(c.Payload)
		return c.Payload, nil
	}).ReusePayload())
	ctx := testCtx(t)
	inParallel(t, 3, func(g int) error {
		for i := range 8 {
			if _, err := echoed(ctx, cli, srv, "echo", pattern(700<<10, g*10+i)); err != nil {
				return fmt.Errorf("call %d: %w", i, err)
			}
		}
		return nil
	})
}

// The payload of a ReusePayload handler that panicked comes back too, and
// Shutdown lets every kept buffer go.
func TestReusePayloadAfterPanicAndShutdown(t *testing.T) {
	srv, cli := streamPair(t)
	mustRegister(t, srv, velo.UnaryHandler("boom", func(context.Context, *velo.Context) ([]byte, error) {
		panic("boom")
	}).ReusePayload())
	ctx := testCtx(t)
	for i := range 3 {
		_, err := cli.Unary("boom").RawPayload(pattern(1<<20, i)).Instance(srv.InstanceID()).Send(ctx)
		if !errors.Is(err, velo.ErrHandlerPanic) {
			t.Fatalf("call %d: %v; want ErrHandlerPanic", i, err)
		}
	}
	// The payload comes back after the error answer is written: the
	// caller may look before it has.
	deadline := time.Now().Add(5 * time.Second)
	for st := srv.Stats().Totals; st.PayloadsReused == 0 || st.PayloadBytesKept < 1<<20; st = srv.Stats().Totals {
		if time.Now().After(deadline) {
			t.Fatalf("after three panics: %d payloads reused, %d bytes kept; want some and at least 1 MiB", st.PayloadsReused, st.PayloadBytesKept)
		}
		time.Sleep(time.Millisecond)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats().Totals; st.PayloadBytesKept != 0 {
		t.Errorf("%d bytes kept after Shutdown", st.PayloadBytesKept)
	}
}

// Mixed traffic: callers at once send large payloads of random sizes to a
// handler that reuses them and to one that keeps them, releasing some
// responses and keeping others; every response arrives byte-exact, and
// everything kept, on either side, is intact at the end.
func TestReusePayloadMixed(t *testing.T) {
	srv, cli := streamPair(t)
	reuseEcho(t, srv)
	var mu sync.Mutex
	type keptPayload struct {
		b    []byte
		seed int
	}
	var onServer []keptPayload
	mustRegister(t, srv, velo.UnaryHandler("keep", func(_ context.Context, c *velo.Context) ([]byte, error) {
		mu.Lock()
		onServer = append(onServer, keptPayload{c.Payload, int(c.Payload[0])})
		mu.Unlock()
		return c.Payload[:1000], nil
	}))
	ctx := testCtx(t)
	const callers, calls = 3, 16
	kept := make([][]keptPayload, callers)
	inParallel(t, callers, func(g int) error {
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		for i := range calls {
			seed := g*calls + i
			want := pattern(300<<10+rng.IntN(3<<20), seed)
			want[0] = byte(seed) // the keep handler's record of which it was
			var got []byte
			var err error
			if rng.IntN(3) == 0 {
				got, err = cli.Unary("keep").RawPayload(want).Instance(srv.InstanceID()).Send(ctx)
				if err == nil && !bytes.Equal(got, want[:1000]) {
					err = fmt.Errorf("%d bytes, not the first 1000 of the payload", len(got))
				}
			} else {
				got, err = echoed(ctx, cli, srv, "echo", want)
			}
			if err != nil {
				return fmt.Errorf("call %d: %w", i, err)
			}
			if rng.IntN(2) == 0 {
				kept[g] = append(kept[g], keptPayload{got, seed})
			} else {
				cli.ReleasePayload(got)
			}
		}
		return nil
	})
	if t.Failed() {
		return
	}
	for g := range kept {
		for _, k := range kept[g] {
			want := pattern(len(k.b), k.seed)
			want[0] = byte(k.seed)
			if !bytes.Equal(k.b, want) {
				t.Errorf("a response caller %d kept (call seed %d) changed", g, k.seed)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range onServer {
		want := pattern(len(k.b), k.seed)
		want[0] = byte(k.seed)
		if !bytes.Equal(k.b, want) {
			t.Errorf("a payload the keep handler kept (seed %d) changed", k.seed)
		}
	}
	if n := cli.Stats().Totals.PayloadsReused; n == 0 {
		t.Error("no response was received into memory handed back")
	}
}

// inParallel runs f for callers 0 to n-1 at once, and fails t with the
// error of each that returned one.
func inParallel(t *testing.T, n int, f func(g int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { errs[g] = f(g) })
	}
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", g, err)
		}
	}
}

// echoed makes a Unary call of handler on srv from cli with want, and
// reports an error unless want comes back byte-exact.
func echoed(ctx context.Context, cli, srv *velo.Messenger, handler string, want []byte) ([]byte, error) {
	got, err := cli.Unary(handler).RawPayload(want).Instance(srv.InstanceID()).Send(ctx)
	if err == nil && !bytes.Equal(got, want) {
		err = fmt.Errorf("%d bytes came back for %d, not the same", len(got), len(want))
	}
	return got, err
}

// A ReusePayload handler (or an interceptor) that reassigns c.Payload does
// not lose the payload's reuse: velo hands back what it lent.
func TestReusePayloadHandlerReassigns(t *testing.T) {
	srv, cli := streamPair(t)
	mustRegister(t, srv, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		p := c.Payload
		c.Payload = nil
		return p, nil
	}).ReusePayload())
	ctx := testCtx(t)
	for i := range 8 {
		if _, err := echoed(ctx, cli, srv, "echo", pattern(1<<20, i)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := srv.Stats().Totals.PayloadsReused; n == 0 {
		t.Error("no request was received into the memory of one before")
	}
}

type blob struct{ Data []byte }

// A typed call hands its large response back on its own once decoded (no
// interceptor saw it): the next is received into its memory, and what was
// decoded stays intact.
func TestTypedUnaryReusesResponses(t *testing.T) {
	srv, cli := streamPair(t)
	mustRegister(t, srv, velo.TypedUnaryHandler("blob", func(_ context.Context, c *velo.TypedContext[blob]) (blob, error) {
		return c.Input, nil
	}))
	ctx := testCtx(t)
	var got []blob
	for i := range 4 {
		r, err := velo.TypedUnary[blob](cli, "blob").Payload(blob{pattern(1<<20, i)}).Instance(srv.InstanceID()).Send(ctx)
		if err != nil || !bytes.Equal(r.Data, pattern(1<<20, i)) {
			t.Fatalf("call %d: %d bytes, %v", i, len(r.Data), err)
		}
		got = append(got, r)
	}
	for i, r := range got {
		if !bytes.Equal(r.Data, pattern(1<<20, i)) {
			t.Errorf("the result of call %d changed", i)
		}
	}
	if n := cli.Stats().Totals.PayloadsReused; n != 3 {
		t.Errorf("%d of 4 typed responses received into memory handed back; want 3", n)
	}
}
