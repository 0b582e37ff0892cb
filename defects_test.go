package velo_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport/tcp"
)

// A handler that returns an event error (it awaited an event whose owner
// was lost, or that was poisoned) answers with the event error's own code,
// and the caller's error matches the same sentinel as a local one would.
func TestEventErrorKeepsItsCodeAcrossTheWire(t *testing.T) {
	for _, tc := range e2ePairs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := tc.mk(t)
			mustRegister(t, b, velo.UnaryHandler("await", func(_ context.Context, c *velo.Context) ([]byte, error) {
				switch string(c.Payload) {
				case "lost":
					return nil, fmt.Errorf("awaiting the job: %w", events.ErrOwnerLost)
				case "restarted":
					return nil, events.ErrOwnerRestarted
				default:
					return nil, &events.PoisonError{Reason: "disk full"}
				}
			}))
			for _, c := range []struct {
				payload  string
				sentinel error
				code     velo.Code
				text     string
			}{
				{"lost", velo.ErrOwnerLost, velo.CodeOwnerLost, "awaiting the job"},
				{"restarted", velo.ErrOwnerLost, velo.CodeOwnerLost, ""},
				{"poisoned", velo.ErrEventPoisoned, velo.CodeEventPoisoned, "disk full"},
			} {
				_, err := a.Unary("await").RawPayload([]byte(c.payload)).Instance(b.InstanceID()).Send(ctx)
				var ve *velo.Error
				if !errors.As(err, &ve) || ve.Code != c.code || !ve.Remote {
					t.Fatalf("%s: err %v, want a remote *velo.Error with code %v", c.payload, err, c.code)
				}
				if !errors.Is(err, c.sentinel) {
					t.Errorf("%s: errors.Is(%v, %v) is false", c.payload, err, c.sentinel)
				}
				if errors.Is(err, velo.ErrHandlerError) {
					t.Errorf("%s: %v also matches ErrHandlerError", c.payload, err)
				}
				if !strings.Contains(ve.Message, c.text) {
					t.Errorf("%s: message %q lacks %q", c.payload, ve.Message, c.text)
				}
			}
			// AMSync carries the code too.
			err := a.AMSync("await").RawPayload([]byte("lost")).Instance(b.InstanceID()).Send(ctx)
			if !errors.Is(err, velo.ErrOwnerLost) {
				t.Errorf("AMSync: %v does not match ErrOwnerLost", err)
			}
		})
	}
}

// A call made without Payload to a typed handler whose input's zero value
// is valid runs the handler with that zero value; a typed call whose
// result comes back empty gets the zero result.
func TestTypedEmptyPayloadIsTheZeroValue(t *testing.T) {
	ctx := testCtx(t)
	a, b := memPair(t)
	mustRegister(t, b, velo.TypedUnaryHandler("ping", func(_ context.Context, c *velo.TypedContext[struct{}]) (string, error) {
		return "pong", nil
	}))
	mustRegister(t, b, velo.TypedUnaryHandler("count", func(_ context.Context, c *velo.TypedContext[int]) (int, error) {
		return c.Input + 1, nil
	}))
	mustRegister(t, b, velo.UnaryHandler("nothing", func(context.Context, *velo.Context) ([]byte, error) {
		return nil, nil
	}))
	got, err := velo.TypedUnary[string](a, "ping").Instance(b.InstanceID()).Send(ctx)
	if err != nil || got != "pong" {
		t.Errorf("struct{} input without Payload: %q, %v; want pong", got, err)
	}
	n, err := velo.TypedUnary[int](a, "count").Instance(b.InstanceID()).Send(ctx)
	if err != nil || n != 1 {
		t.Errorf("int input without Payload: %d, %v; want 1", n, err)
	}
	if _, err := velo.TypedUnary[struct{}](a, "nothing").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Errorf("empty result into struct{}: %v", err)
	}
	// A payload that is present and wrong still fails.
	_, err = velo.TypedUnary[int](a, "count").RawPayload([]byte{0xc1}).Instance(b.InstanceID()).Send(ctx)
	if !errors.Is(err, velo.ErrBadPayload) {
		t.Errorf("malformed input: %v, want ErrBadPayload", err)
	}
}

// The public error codes are values of their own: go doc shows numbers,
// not conversions of an internal package's constants.
func TestCodesAreValuesOfTheirOwn(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			if !strings.HasPrefix(vs.Names[0].Name, "Code") {
				continue
			}
			for _, v := range vs.Values {
				n++
				if _, ok := v.(*ast.BasicLit); !ok {
					t.Errorf("%s is not a plain number: %T", vs.Names[0].Name, v)
				}
			}
		}
	}
	if n < 16 {
		t.Errorf("found %d codes with values, want 16", n)
	}
	// Every code still crosses the wire as itself.
	ctx := testCtx(t)
	a, b := memPair(t)
	mustRegister(t, b, velo.UnaryHandler("code", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return nil, &velo.Error{Code: velo.Code(c.Payload[0]), Message: "m"}
	}))
	for c := velo.CodeHandlerNotFound; c <= velo.CodeEventPoisoned; c++ {
		_, err := a.Unary("code").RawPayload([]byte{byte(c)}).Instance(b.InstanceID()).Send(ctx)
		var ve *velo.Error
		if !errors.As(err, &ve) || ve.Code != c {
			t.Errorf("code %v came back as %v", c, err)
		}
	}
}

// A hello of another protocol version is refused, with an answer that
// names both versions, and the connection closes.
func TestHandshakeRefusesAnotherProtocolVersion(t *testing.T) {
	b := newMessenger(t, velo.Options{})
	addr, _ := b.PeerInfo().Address(tcp.Name)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := system.HelloMsg{Info: peer.Info{ID: peer.NewID(), Addresses: map[string]string{tcp.Name: c.LocalAddr().String()}}, MaxFrame: wire.DefaultMaxFrame, Protocol: wire.Version + 1}
	p, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: system.Hello, Payload: p})); err != nil {
		t.Fatal(err)
	}
	resp := readRawResponse(t, c)
	want := fmt.Sprintf("version %d, this instance %d", wire.Version+1, wire.Version)
	if resp.Status != wire.StatusBadRequest || !strings.Contains(resp.Error, want) {
		t.Errorf("hello answered with status %d %q; want bad request naming %q", resp.Status, resp.Error, want)
	}
	if _, err := waitPeerClose(c, 5*time.Second); err != nil {
		t.Errorf("connection still open: %v", err)
	}
}

// A request whose caller gave up while it waited in its handler's mailbox
// (here behind a Concurrency(1) handler that is busy) is answered and
// never run: the handler does not spend time on work nobody waits for.
func TestRequestExpiredInMailboxIsNotRun(t *testing.T) {
	ctx := testCtx(t)
	a, b := memPair(t)
	release := make(chan struct{})
	var runs []string
	var mu sync.Mutex
	mustRegister(t, b, velo.UnaryHandler("one-at-a-time", func(_ context.Context, c *velo.Context) ([]byte, error) {
		mu.Lock()
		runs = append(runs, string(c.Payload))
		mu.Unlock()
		if string(c.Payload) == "first" {
			<-release
		}
		return nil, nil
	}).Concurrency(1))
	first := make(chan error, 1)
	go func() {
		_, err := a.Unary("one-at-a-time").RawPayload([]byte("first")).Instance(b.InstanceID()).Send(ctx)
		first <- err
	}()
	for { // the first call is running
		mu.Lock()
		n := len(runs)
		mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := a.Unary("one-at-a-time").RawPayload([]byte("expired")).Instance(b.InstanceID()).Send(short)
	cancel()
	if !errors.Is(err, velo.ErrDeadlineExceeded) {
		t.Fatalf("queued call: %v, want ErrDeadlineExceeded", err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	canceled := make(chan error, 1)
	go func() {
		_, err := a.Unary("one-at-a-time").RawPayload([]byte("canceled")).Instance(b.InstanceID()).Send(cctx)
		canceled <- err
	}()
	time.Sleep(50 * time.Millisecond) // queued behind the first
	ccancel()
	if err := <-canceled; !errors.Is(err, velo.ErrCanceled) {
		t.Fatalf("canceled call: %v, want ErrCanceled", err)
	}
	time.Sleep(50 * time.Millisecond) // the cancel frame reached b
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unary("one-at-a-time").RawPayload([]byte("last")).Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"first", "last"}; !slices.Equal(runs, want) {
		t.Errorf("handler ran %q, want %q: a request whose caller gave up was still run", runs, want)
	}
}
