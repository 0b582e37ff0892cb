package velo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/actor"
	"github.com/velo-messenger/velo/peer"
)

// checkVeloError asserts that err matches sentinel with errors.Is and is a
// *velo.Error with the sentinel's code, the given handler and origin, and
// (when msgSub is not empty) a message containing msgSub.
func checkVeloError(t *testing.T, err error, sentinel *velo.Error, handler string, remote bool, msgSub string) {
	t.Helper()
	if err == nil {
		t.Errorf("err = nil, want %v", sentinel)
		return
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("err = %v, want errors.Is(err, %v)", err, sentinel)
	}
	var ve *velo.Error
	if !errors.As(err, &ve) {
		t.Errorf("err = %v (%T), want a *velo.Error", err, err)
		return
	}
	if ve.Code != sentinel.Code {
		t.Errorf("Code = %v, want %v", ve.Code, sentinel.Code)
	}
	if ve.Handler != handler {
		t.Errorf("Handler = %q, want %q (err %v)", ve.Handler, handler, err)
	}
	if ve.Remote != remote {
		t.Errorf("Remote = %v, want %v (err %v)", ve.Remote, remote, err)
	}
	if msgSub != "" && !strings.Contains(ve.Message, msgSub) {
		t.Errorf("Message = %q, want it to contain %q", ve.Message, msgSub)
	}
}

func TestErrorHandlerNotFound(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			id := b.InstanceID()

			_, err := a.Unary("nosuch").Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerNotFound, "nosuch", true, `"nosuch"`)
			if errors.Is(err, velo.ErrHandlerError) || errors.Is(err, velo.ErrPeerUnknown) {
				t.Errorf("err %v matches a sentinel of another code", err)
			}
			if want := `velo: handler not found (handler "nosuch"): `; err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err.Error() = %q, want prefix %q", err, want)
			}

			err = a.AMSync("missing-too").Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerNotFound, "missing-too", true, `"missing-too"`)

			_, err = velo.TypedUnary[tuReceipt](a, "nope").Payload(sampleOrder()).Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerNotFound, "nope", true, `"nope"`)

			// AMSend reports nothing about the remote side.
			if err := a.AMSend("nosuch").Instance(id).Send(ctx); err != nil {
				t.Errorf("AMSend to a missing handler: %v, want nil", err)
			}
		})
	}
}

func TestErrorFromHandlerCarriesItsText(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			mustRegister(t, b, velo.UnaryHandler("disk", func(_ context.Context, c *velo.Context) ([]byte, error) {
				if string(c.Payload) == "wrapped" {
					return nil, fmt.Errorf("reading sector 7: %w", io.ErrUnexpectedEOF)
				}
				return nil, errors.New("disk on fire")
			}))
			mustRegister(t, b, velo.AMHandler("am-disk", func(context.Context, *velo.Context) error {
				return errors.New("am disk on fire")
			}))
			id := b.InstanceID()

			_, err := a.Unary("disk").Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerError, "disk", true, "")
			var ve *velo.Error
			if errors.As(err, &ve) && ve.Message != "disk on fire" {
				t.Errorf("Message = %q, want %q", ve.Message, "disk on fire")
			}
			if err != nil && err.Error() != `velo: handler error (handler "disk"): disk on fire` {
				t.Errorf("err.Error() = %q", err)
			}

			_, err = a.Unary("disk").RawPayload([]byte("wrapped")).Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerError, "disk", true, "")
			if errors.As(err, &ve) && ve.Message != "reading sector 7: unexpected EOF" {
				t.Errorf("Message = %q, want the wrapped text", ve.Message)
			}

			err = a.AMSync("am-disk").Instance(id).Send(ctx)
			checkVeloError(t, err, velo.ErrHandlerError, "am-disk", true, "")
			if errors.As(err, &ve) && ve.Message != "am disk on fire" {
				t.Errorf("Message = %q, want %q", ve.Message, "am disk on fire")
			}
		})
	}
}

// TestErrorHandlerPanicEachMode checks that a panic fails only its own
// call, with the panic value, and that the handler serves afterwards under
// the default restart policy, in each dispatch mode.
func TestErrorHandlerPanicEachMode(t *testing.T) {
	modes := []struct {
		name string
		set  func(*velo.HandlerBuilder) *velo.HandlerBuilder
	}{
		{"spawn", (*velo.HandlerBuilder).Spawn},
		{"inline", (*velo.HandlerBuilder).Inline},
		{"ordered", (*velo.HandlerBuilder).Ordered},
	}
	for _, tc := range e2ePairs {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				ctx := testCtx(t)
				a, b := tc.mk(t)
				name := "panicky-" + mode.name
				mustRegister(t, b, mode.set(velo.UnaryHandler(name, func(_ context.Context, c *velo.Context) ([]byte, error) {
					if strings.HasPrefix(string(c.Payload), "panic") {
						panic("boom in " + mode.name + " " + string(c.Payload))
					}
					return c.Payload, nil
				})))
				call := func(p string) ([]byte, error) {
					return a.Unary(name).RawPayload([]byte(p)).Instance(b.InstanceID()).Send(ctx)
				}
				for i := range 3 {
					ok := fmt.Sprint("ok", i)
					if got, err := call(ok); err != nil || string(got) != ok {
						t.Fatalf("call %q = %q, %v", ok, got, err)
					}
					p := fmt.Sprint("panic", i)
					_, err := call(p)
					checkVeloError(t, err, velo.ErrHandlerPanic, name, true, "boom in "+mode.name+" "+p)
				}
				if got, err := call("after"); err != nil || string(got) != "after" {
					t.Fatalf("after the panics: %q, %v", got, err)
				}
				// AMSync sees the panic too.
				err := a.AMSync(name).RawPayload([]byte("panic-sync")).Instance(b.InstanceID()).Send(ctx)
				checkVeloError(t, err, velo.ErrHandlerPanic, name, true, "panic-sync")
			})
		}
	}
}

func TestErrorCodeFromHandlerKeptAcrossWire(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			mustRegister(t, b, velo.UnaryHandler("busy", func(_ context.Context, c *velo.Context) ([]byte, error) {
				e := &velo.Error{Code: velo.CodeBusy, Message: "queue full, retry later"}
				if string(c.Payload) == "wrap" {
					return nil, fmt.Errorf("admission: %w", e)
				}
				return nil, e
			}))
			_, err := a.Unary("busy").Instance(b.InstanceID()).Send(ctx)
			checkVeloError(t, err, velo.ErrBusy, "busy", true, "queue full, retry later")
			if errors.Is(err, velo.ErrHandlerError) {
				t.Errorf("a busy answer also matches ErrHandlerError: %v", err)
			}
			_, err = a.Unary("busy").RawPayload([]byte("wrap")).Instance(b.InstanceID()).Send(ctx)
			checkVeloError(t, err, velo.ErrBusy, "busy", true, "queue full, retry later")
		})
	}
}

func TestErrorRestartPolicyStopsHandler(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	var runs atomic.Int32
	mustRegister(t, b, velo.UnaryHandler("fragile", func(context.Context, *velo.Context) ([]byte, error) {
		n := runs.Add(1)
		panic(fmt.Sprintf("fragile broke #%d", n))
	}).Restart(actor.RestartPolicy{MaxRestarts: 2}))
	mustRegister(t, b, velo.UnaryHandler("sturdy", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	id := b.InstanceID()
	for i := 1; i <= 3; i++ {
		_, err := a.Unary("fragile").Instance(id).Send(ctx)
		checkVeloError(t, err, velo.ErrHandlerPanic, "fragile", true, fmt.Sprintf("fragile broke #%d", i))
	}
	for i := 4; i <= 5; i++ {
		_, err := a.Unary("fragile").Instance(id).Send(ctx)
		checkVeloError(t, err, velo.ErrHandlerStopped, "fragile", true, "stopped")
		if errors.Is(err, velo.ErrHandlerPanic) {
			t.Errorf("call %d: a stopped handler's error matches ErrHandlerPanic: %v", i, err)
		}
	}
	err := a.AMSync("fragile").Instance(id).Send(ctx)
	checkVeloError(t, err, velo.ErrHandlerStopped, "fragile", true, "stopped")
	if n := runs.Load(); n != 3 {
		t.Errorf("the handler ran %d times, want 3 (never after it stopped)", n)
	}
	if got, err := a.Unary("sturdy").RawPayload([]byte("still here")).Instance(id).Send(ctx); err != nil || string(got) != "still here" {
		t.Errorf("another handler after the stop: %q, %v", got, err)
	}
}

func TestErrorStatefulHandlerResetsAfterRestart(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	var built atomic.Int32
	mustRegister(t, b, velo.UnaryHandlerFactory("counter", func() func(context.Context, *velo.Context) ([]byte, error) {
		built.Add(1)
		var n atomic.Int64 // state of this incarnation
		return func(_ context.Context, c *velo.Context) ([]byte, error) {
			if string(c.Payload) == "panic" {
				panic("counter corrupted")
			}
			return []byte(strconv.FormatInt(n.Add(1), 10)), nil
		}
	}))
	count := func() string {
		t.Helper()
		got, err := a.Unary("counter").Instance(b.InstanceID()).Send(ctx)
		if err != nil {
			t.Fatalf("counter: %v", err)
		}
		return string(got)
	}
	for _, want := range []string{"1", "2", "3"} {
		if got := count(); got != want {
			t.Fatalf("counter = %s, want %s", got, want)
		}
	}
	_, err := a.Unary("counter").RawPayload([]byte("panic")).Instance(b.InstanceID()).Send(ctx)
	checkVeloError(t, err, velo.ErrHandlerPanic, "counter", true, "counter corrupted")
	for _, want := range []string{"1", "2"} {
		if got := count(); got != want {
			t.Fatalf("after the restart counter = %s, want %s (fresh state)", got, want)
		}
	}
	if n := built.Load(); n != 2 {
		t.Errorf("factory called %d times, want 2 (registration and one restart)", n)
	}
}

func TestErrorPeerUnknown(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	mustRegister(t, b, velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return c.Payload, nil
	}))
	stranger := peer.NewID()
	_, err := a.Unary("echo").Instance(stranger).Send(ctx)
	checkVeloError(t, err, velo.ErrPeerUnknown, "echo", false, stranger.String())
	err = a.AMSend("echo").Instance(stranger).Send(ctx)
	checkVeloError(t, err, velo.ErrPeerUnknown, "echo", false, stranger.String())
	err = a.AMSync("echo").Instance(stranger).Send(ctx)
	checkVeloError(t, err, velo.ErrPeerUnknown, "echo", false, stranger.String())

	// No Instance at all (or the zero id) routes the call to an instance
	// that offers the handler; when none does, it is not found, at once.
	if got, err := velo.TypedUnary[string](a, "echo").Instance(peer.ID{}).Payload("x").Send(ctx); err != nil || got != "x" {
		t.Errorf("routed call = %q, %v; want the echo from b", got, err)
	}
	_, err = a.Unary("nobody-offers-this").Send(ctx)
	checkVeloError(t, err, velo.ErrHandlerNotFound, "nobody-offers-this", false, "no live instance offers")
	if !velo.NotDelivered(err) {
		t.Errorf("NotDelivered(%v) = false for a call no instance could take", err)
	}

	// The known peer is still reachable.
	if got, err := a.Unary("echo").RawPayload([]byte("k")).Instance(b.InstanceID()).Send(ctx); err != nil || string(got) != "k" {
		t.Errorf("known peer after the failures: %q, %v", got, err)
	}
}

func TestErrorBadPayloadServerSide(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			var calls atomic.Int32
			mustRegister(t, b, velo.TypedUnaryHandler("receipt", func(_ context.Context, c *velo.TypedContext[tuOrder]) (tuReceipt, error) {
				calls.Add(1)
				return receiptFor(c.Input), nil
			}))
			// 0xc1 is the one byte MessagePack never uses.
			_, err := velo.TypedUnary[tuReceipt](a, "receipt").RawPayload([]byte{0xc1, 0x00, 0xff}).Instance(b.InstanceID()).Send(ctx)
			checkVeloError(t, err, velo.ErrBadPayload, "receipt", true, "velo_test.tuOrder")
			// A well-formed value of the wrong shape.
			_, err = a.Unary("receipt").Payload("a string, not an order").Instance(b.InstanceID()).Send(ctx)
			checkVeloError(t, err, velo.ErrBadPayload, "receipt", true, "velo_test.tuOrder")
			if n := calls.Load(); n != 0 {
				t.Errorf("the typed handler ran %d times on undecodable input, want 0", n)
			}
		})
	}
}

func TestErrorBadPayloadClientSide(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	notAReceipt, err := msgpack.Marshal("not a receipt")
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, b, velo.UnaryHandler("liar", func(context.Context, *velo.Context) ([]byte, error) {
		return notAReceipt, nil
	}))
	mustRegister(t, b, velo.UnaryHandler("garbage", func(context.Context, *velo.Context) ([]byte, error) {
		return []byte{0xc1}, nil
	}))
	_, err = velo.TypedUnary[tuReceipt](a, "liar").Instance(b.InstanceID()).Send(ctx)
	checkVeloError(t, err, velo.ErrBadPayload, "liar", false, "velo_test.tuReceipt")
	_, err = velo.TypedUnary[int](a, "garbage").Instance(b.InstanceID()).Send(ctx)
	checkVeloError(t, err, velo.ErrBadPayload, "garbage", false, "int")
	// The same result read as what it is decodes fine.
	if s, err := velo.TypedUnary[string](a, "liar").Instance(b.InstanceID()).Send(ctx); err != nil || s != "not a receipt" {
		t.Errorf("TypedUnary[string] = %q, %v", s, err)
	}
}

func TestErrorUnencodablePayloadIsNotSent(t *testing.T) {
	ctx := testCtx(t)
	a, b := pair(t)
	var calls atomic.Int32
	// Ordered: every message of a runs in send order, so when the final
	// AMSync returns, anything sent before it has been handled.
	mustRegister(t, b, velo.AMHandler("sink", func(context.Context, *velo.Context) error {
		calls.Add(1)
		return nil
	}).Ordered())
	bad := make(chan int)
	for _, target := range []struct {
		name string
		id   peer.ID
	}{{"known peer", b.InstanceID()}, {"unknown peer", peer.NewID()}} {
		// Against an unknown peer the encoding error still comes first:
		// Send gave up before looking for the peer.
		t.Run(target.name, func(t *testing.T) {
			err := a.AMSend("sink").Payload(bad).Instance(target.id).Send(ctx)
			checkVeloError(t, err, velo.ErrBadPayload, "sink", false, "chan int")
			err = a.AMSync("sink").Payload(bad).Instance(target.id).Send(ctx)
			checkVeloError(t, err, velo.ErrBadPayload, "sink", false, "chan int")
			_, err = a.Unary("sink").Payload(bad).Instance(target.id).Send(ctx)
			checkVeloError(t, err, velo.ErrBadPayload, "sink", false, "chan int")
			_, err = velo.TypedUnary[string](a, "sink").Payload(bad).Instance(target.id).Send(ctx)
			checkVeloError(t, err, velo.ErrBadPayload, "sink", false, "chan int")
		})
	}
	before := calls.Load()
	if err := a.AMSync("sink").Payload("ok").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatalf("AMSync with a good payload: %v", err)
	}
	// Only the good AMSync reached b: none of the refused calls was sent.
	if n := calls.Load() - before; n != 1 {
		t.Errorf("the handler ran %d times for the final AMSync, want 1", n)
	}
}

func TestErrorStringFormat(t *testing.T) {
	for _, tc := range []struct {
		err  *velo.Error
		want string
	}{
		{&velo.Error{Code: velo.CodeHandlerNotFound, Handler: "x", Message: `no handler "x" on instance 0a0b0c0d`},
			`velo: handler not found (handler "x"): no handler "x" on instance 0a0b0c0d`},
		{&velo.Error{Code: velo.CodeHandlerError, Handler: "disk", Message: "disk on fire", Remote: true},
			`velo: handler error (handler "disk"): disk on fire`},
		{&velo.Error{Code: velo.CodeBusy}, "velo: busy"},
		{&velo.Error{Code: velo.CodePeerUnknown, Message: "who?"}, "velo: peer unknown: who?"},
		{&velo.Error{Code: velo.CodeHandlerPanic, Handler: "h"}, `velo: handler panic (handler "h")`},
		{&velo.Error{Code: velo.CodeHandlerStopped, Handler: "h", Message: "gone"}, `velo: handler stopped (handler "h"): gone`},
		{&velo.Error{Code: velo.CodeBadPayload, Handler: "t", Message: "decoding x.T: eof"}, `velo: bad payload (handler "t"): decoding x.T: eof`},
		{&velo.Error{Code: velo.Code(250)}, "velo: code 250"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	// The sentinels themselves read as their code.
	if got := velo.ErrHandlerNotFound.Error(); got != "velo: handler not found" {
		t.Errorf("ErrHandlerNotFound.Error() = %q", got)
	}
	// errors.Is matches on the code only, whatever the other fields.
	e := &velo.Error{Code: velo.CodeBusy, Handler: "a", Message: "m", Remote: true}
	if !errors.Is(e, velo.ErrBusy) || errors.Is(e, velo.ErrHandlerError) {
		t.Errorf("errors.Is on codes is wrong for %v", e)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), velo.ErrBusy) {
		t.Errorf("errors.Is does not see through wrapping")
	}
}
