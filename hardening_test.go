package velo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
)

// TestHardeningLongErrorTextFailsOnlyItsCall: a handler whose error (or
// panic) text is longer than the peer's frame limit gets its text cut to
// 4096 with a marker, its code intact; a result too large for
// the peer fails its own call with ErrPayloadTooLarge. The 20 calls in
// flight on the same connection meanwhile all succeed (before the fix the
// response frame was over the peer's limit, the peer closed the connection
// and every call on it failed with ErrPeerLost).
func TestHardeningLongErrorTextFailsOnlyItsCall(t *testing.T) {
	a, b := pair(t)
	long := strings.Repeat("é", 9<<20) // 18 MiB: over the 16 MiB frame limit
	release := make(chan struct{})
	started := make(chan struct{}, 20)
	mustRegister(t, b, velo.UnaryHandler("slow", func(ctx context.Context, c *velo.Context) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return c.Payload, nil
	}))
	mustRegister(t, b, velo.UnaryHandler("longerr", func(context.Context, *velo.Context) ([]byte, error) {
		return nil, errors.New(long)
	}))
	mustRegister(t, b, velo.UnaryHandler("longpanic", func(context.Context, *velo.Context) ([]byte, error) {
		panic(long)
	}))
	mustRegister(t, b, velo.UnaryHandler("huge", func(context.Context, *velo.Context) ([]byte, error) {
		return make([]byte, 17<<20), nil
	}))
	ctx := testCtx(t)
	id := b.InstanceID()

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			want := fmt.Sprint(i)
			got, err := a.Unary("slow").RawPayload([]byte(want)).Instance(id).Send(ctx)
			if err == nil && string(got) != want {
				err = fmt.Errorf("slow answered %q, want %q", got, want)
			}
			errs <- err
		})
	}
	for range 20 {
		waitRecv(t, ctx, started, "slow handler start")
	}

	for _, name := range []string{"longerr", "longpanic"} {
		_, err := a.Unary(name).Instance(id).Send(ctx)
		code := velo.ErrHandlerError
		if name == "longpanic" {
			code = velo.ErrHandlerPanic
		}
		var ve *velo.Error
		if !errors.Is(err, code) || !errors.As(err, &ve) {
			t.Fatalf("%s: err = %.200v, want %v", name, err, code)
		}
		if n := len(ve.Message); n > velo.MaxErrorText || !strings.Contains(ve.Message, "cut") {
			t.Fatalf("%s: message of %d bytes (limit %d), ends %q", name, n, velo.MaxErrorText, ve.Message[max(0, n-40):])
		}
		t.Logf("%s: %v, message cut to %d bytes", name, ve.Code, len(ve.Message))
	}
	if _, err := a.Unary("huge").Instance(id).Send(ctx); !errors.Is(err, velo.ErrPayloadTooLarge) {
		t.Fatalf("huge: err = %v, want ErrPayloadTooLarge", err)
	}

	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a call in flight beside the long answers failed: %v", err)
		}
	}
	// The connection that carried everything is still the one in use.
	start := time.Now()
	if _, err := a.Unary("slow").Instance(id).Send(ctx); err != nil {
		t.Fatalf("call after the long answers: %v", err)
	}
	t.Logf("20 calls in flight beside two cut error texts and one oversize result: all succeeded; next call %v", time.Since(start))
}
