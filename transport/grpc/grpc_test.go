package grpc_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/velo-messenger/velo/transport"
	velogrpc "github.com/velo-messenger/velo/transport/grpc"
)

type nopHandler struct{ closed chan error }

func (nopHandler) HandleFrame([]byte) error { return nil }
func (h nopHandler) Closed(err error) {
	if h.closed != nil {
		h.closed <- err
	}
}

func nopBind(transport.Conn) transport.Handler { return nopHandler{} }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialClosedPortFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := velogrpc.New(velogrpc.Options{})
	defer tr.Close()
	start := time.Now()
	if _, err := tr.Dial(testCtx(t), addr, nopBind); err == nil {
		t.Fatal("Dial of a closed port succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial of a closed port took %v", d)
	}
}

// A gRPC server without velo's service is no velo listener.
func TestDialRefusesAnotherGRPCServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	defer func() { srv.Stop(); <-done }()
	tr := velogrpc.New(velogrpc.Options{})
	defer tr.Close()
	_, err = tr.Dial(testCtx(t), ln.Addr().String(), nopBind)
	if status.Code(errors.Unwrap(err)) != codes.Unimplemented {
		t.Errorf("Dial of a server without the service: %v, want Unimplemented", err)
	}
}

func TestMaxConns(t *testing.T) {
	srv := velogrpc.New(velogrpc.Options{MaxConns: 1})
	defer srv.Close()
	addr, err := srv.Listen(testCtx(t), nopBind)
	if err != nil {
		t.Fatal(err)
	}
	tr := velogrpc.New(velogrpc.Options{})
	defer tr.Close()
	h := nopHandler{closed: make(chan error, 1)}
	c, err := tr.Dial(testCtx(t), addr, func(transport.Conn) transport.Handler { return h })
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Dial(testCtx(t), addr, nopBind)
	if status.Code(errors.Unwrap(err)) != codes.ResourceExhausted || !strings.Contains(err.Error(), "too many") {
		t.Errorf("Dial beyond MaxConns: %v, want ResourceExhausted", err)
	}
	c.Close(nil)
	<-h.closed
}

func TestUseAfterClose(t *testing.T) {
	tr := velogrpc.New(velogrpc.Options{})
	tr.Close()
	tr.Close()
	if _, err := tr.Listen(testCtx(t), nopBind); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if _, err := tr.Dial(testCtx(t), "127.0.0.1:1", nopBind); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Dial after Close: %v", err)
	}
}

func TestAdvertise(t *testing.T) {
	tr := velogrpc.New(velogrpc.Options{Advertise: "velo.example:9000"})
	defer tr.Close()
	addr, err := tr.Listen(testCtx(t), nopBind)
	if err != nil || addr != "velo.example:9000" {
		t.Errorf("Listen = %q, %v; want the advertised address", addr, err)
	}
}
