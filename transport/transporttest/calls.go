package transporttest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/peer"
)

// testPatterns: each of the four patterns reaches the handler and brings
// back what it should; an error raised remotely keeps its code.
func testPatterns(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	ctx := e.ctx

	t.Run("AMSend", func(t *testing.T) {
		if err := a.m.AMSend(hAM).RawPayload([]byte("fire")).Instance(b.id).Send(ctx); err != nil {
			t.Fatalf("AMSend: %v", err)
		}
		if got := recv(t, b.got, failFast, "AMSend delivery"); string(got) != "fire" {
			t.Errorf("handler got %q, want %q", got, "fire")
		}
	})
	t.Run("AMSync", func(t *testing.T) {
		if err := a.m.AMSync(hAM).RawPayload([]byte("ack")).Instance(b.id).Send(ctx); err != nil {
			t.Fatalf("AMSync: %v", err)
		}
		// AMSync returns after the handler finished: its report is there.
		select {
		case got := <-b.got:
			if string(got) != "ack" {
				t.Errorf("handler got %q, want %q", got, "ack")
			}
		default:
			t.Error("AMSync returned before the handler ran")
		}
	})
	t.Run("Unary", func(t *testing.T) {
		got, err := a.m.Unary(hEcho).RawPayload([]byte("ping")).Instance(b.id).Send(ctx)
		if err != nil || string(got) != "ping" {
			t.Errorf("Unary = %q, %v; want %q, nil", got, err, "ping")
		}
	})
	t.Run("TypedUnary", func(t *testing.T) {
		r, err := velo.TypedUnary[addResp](a.m, hAdd).Payload(addReq{A: 2, B: 3}).Instance(b.id).Send(ctx)
		if err != nil || r.Sum != 5 {
			t.Errorf("TypedUnary = %+v, %v; want {Sum:5}, nil", r, err)
		}
	})
	t.Run("remote-error", func(t *testing.T) {
		_, err := a.m.Unary("no-such-handler").Instance(b.id).Send(ctx)
		if !errors.Is(err, velo.ErrHandlerNotFound) {
			t.Errorf("calling a missing handler: %v, want ErrHandlerNotFound", err)
		}
	})
	t.Run("reverse", func(t *testing.T) {
		// The connection a opened carries b's calls too.
		got, err := b.m.Unary(hEcho).RawPayload([]byte("pong")).Instance(a.id).Send(ctx)
		if err != nil || string(got) != "pong" {
			t.Errorf("Unary b->a = %q, %v; want %q, nil", got, err, "pong")
		}
	})
}

// testPayloadSizes: empty, 1 B, 64 KiB and the largest payload that fits
// arrive intact with every pattern that carries one.
func testPayloadSizes(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	ctx := e.ctx
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []struct {
		name string
		echo int // payload size for Unary echo
		am   int // payload size for AMSend/AMSync
	}{
		{"empty", 0, 0},
		{"1B", 1, 1},
		{"64KiB", 64 << 10, 64 << 10},
		{"max", maxPayload(b, hEcho), maxPayload(b, hAM)},
	}
	for _, sz := range sizes {
		t.Run(sz.name, func(t *testing.T) {
			if sz.echo > maxPayload(b, hEcho) {
				t.Skipf("%d bytes exceed the transport's maximum payload of %d", sz.echo, maxPayload(b, hEcho))
			}
			p := randomBytes(rng, sz.echo)
			got, err := a.m.Unary(hEcho).RawPayload(p).Instance(b.id).Send(ctx)
			if err != nil {
				t.Fatalf("Unary of %d bytes: %v", len(p), err)
			}
			if !bytes.Equal(got, p) {
				t.Fatalf("Unary of %d bytes came back as %d different bytes", len(p), len(got))
			}
			p = randomBytes(rng, sz.am)
			if err := a.m.AMSync(hAM).RawPayload(p).Instance(b.id).Send(ctx); err != nil {
				t.Fatalf("AMSync of %d bytes: %v", len(p), err)
			}
			if got := recv(t, b.got, failFast, "AMSync delivery"); !bytes.Equal(got, p) {
				t.Fatalf("AMSync of %d bytes delivered %d different bytes", len(p), len(got))
			}
			if err := a.m.AMSend(hAM).RawPayload(p).Instance(b.id).Send(ctx); err != nil {
				t.Fatalf("AMSend of %d bytes: %v", len(p), err)
			}
			if got := recv(t, b.got, failFast, "AMSend delivery"); !bytes.Equal(got, p) {
				t.Fatalf("AMSend of %d bytes delivered %d different bytes", len(p), len(got))
			}
		})
	}
	t.Run("max-response", func(t *testing.T) {
		n := maxResponse(a)
		got, err := a.m.Unary(hSized).RawPayload(u32(n)).Instance(b.id).Send(ctx)
		if err != nil || len(got) != n {
			t.Fatalf("a response of the largest size (%d bytes): %d bytes, %v", n, len(got), err)
		}
	})
}

// testPayloadTooLarge: one byte over the maximum is refused with
// ErrPayloadTooLarge, at once, in both directions, and the connection
// stays usable.
func testPayloadTooLarge(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	ctx := e.ctx
	check := func(t *testing.T, what string, send func() error) {
		t.Helper()
		start := time.Now()
		err := send()
		if !errors.Is(err, velo.ErrPayloadTooLarge) {
			t.Errorf("%s: %v, want ErrPayloadTooLarge", what, err)
		}
		if d := time.Since(start); d > failFast {
			t.Errorf("%s took %v to fail", what, d)
		}
	}
	// Open the connection first, so that the limit is the peer's.
	if _, err := a.m.Unary(hEcho).Instance(b.id).Send(ctx); err != nil {
		t.Fatalf("first call: %v", err)
	}
	over := make([]byte, maxPayload(b, hEcho)+1)
	check(t, "Unary request one byte over", func() error {
		_, err := a.m.Unary(hEcho).RawPayload(over).Instance(b.id).Send(ctx)
		return err
	})
	check(t, "AMSend one byte over", func() error {
		return a.m.AMSend(hAM).RawPayload(make([]byte, maxPayload(b, hAM)+1)).Instance(b.id).Send(ctx)
	})
	check(t, "AMSync one byte over", func() error {
		return a.m.AMSync(hAM).RawPayload(make([]byte, maxPayload(b, hAM)+1)).Instance(b.id).Send(ctx)
	})
	check(t, "response one byte over", func() error {
		_, err := a.m.Unary(hSized).RawPayload(u32(maxResponse(a) + 1)).Instance(b.id).Send(ctx)
		return err
	})
	if got, err := a.m.Unary(hEcho).RawPayload([]byte("still here")).Instance(b.id).Send(ctx); err != nil || string(got) != "still here" {
		t.Errorf("call after the refusals = %q, %v", got, err)
	}
	if n := a.tap.closeCount(); n != 0 {
		t.Errorf("%d connection(s) closed by the refusals, want none", n)
	}
}

// testConcurrentSenders: 8 goroutines on each side call the other side at
// once, with payloads of mixed sizes; every answer is the right one.
func testConcurrentSenders(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a, b := e.pair()
	const senders, calls = 8, 40
	maxP := min(maxPayload(a, hEcho), maxPayload(b, hEcho), 96<<10)
	errs := make(chan error, 2*senders)
	var wg sync.WaitGroup
	for _, dir := range []struct{ from, to *instance }{{a, b}, {b, a}} {
		for g := range senders {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				for i := range calls {
					if err := oneCall(e, rng, dir.from, dir.to, i, maxP); err != nil {
						errs <- fmt.Errorf("sender %d call %d %s->%s: %w", g, i, dir.from.id.Short(), dir.to.id.Short(), err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The AMSend deliveries all arrived (they are not awaited above).
	for range 2 * senders * (calls / 4) {
		select {
		case <-a.got:
		case <-b.got:
		case <-time.After(failFast):
			t.Fatal("AMSend deliveries missing")
		}
	}
}

// oneCall makes the i-th call of a concurrent sender: mostly Unary echo,
// every fourth an AMSend, every fifth a TypedUnary.
func oneCall(e *env, rng *rand.Rand, from, to *instance, i, maxP int) error {
	ctx := e.ctx
	switch {
	case i%4 == 3:
		return from.m.AMSend(hAM).RawPayload([]byte{byte(i)}).Instance(to.id).Send(ctx)
	case i%5 == 4:
		r, err := velo.TypedUnary[addResp](from.m, hAdd).Payload(addReq{A: i, B: 1}).Instance(to.id).Send(ctx)
		if err == nil && r.Sum != i+1 {
			err = fmt.Errorf("add = %d, want %d", r.Sum, i+1)
		}
		return err
	}
	n := rng.IntN(8 << 10)
	if i%10 == 0 {
		n = maxP
	}
	p := randomBytes(rng, n)
	got, err := from.m.Unary(hEcho).RawPayload(p).Instance(to.id).Send(ctx)
	if err == nil && !bytes.Equal(got, p) {
		err = fmt.Errorf("echo of %d bytes came back as %d different bytes", len(p), len(got))
	}
	return err
}

// testMesh: three instances, each calls each of the others at once, and
// every call reaches the instance it was meant for.
func testMesh(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ins := []*instance{e.start(peer.ID{}), e.start(peer.ID{}), e.start(peer.ID{})}
	e.connect(ins...)
	errs := make(chan error, len(ins)*len(ins)*4)
	var wg sync.WaitGroup
	for _, from := range ins {
		for _, to := range ins {
			if from == to {
				continue
			}
			for range 4 {
				wg.Go(func() {
					got, err := from.m.Unary(hWhoami).Instance(to.id).Send(e.ctx)
					if err != nil {
						errs <- fmt.Errorf("%s->%s: %w", from.id.Short(), to.id.Short(), err)
					} else if !bytes.Equal(got, to.id[:]) {
						errs <- fmt.Errorf("%s->%s answered by %x", from.id.Short(), to.id.Short(), got)
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(p[i:], w[:])
	}
	return p
}

func u32(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }
