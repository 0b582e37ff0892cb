package stream_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts stream.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", stream.Options{}, ""},
		{"set", stream.Options{MaxFrame: 1 << 10, ReadBuffer: 1 << 10, MaxPending: 1 << 10}, ""},
		{"negative max frame", stream.Options{MaxFrame: -1}, "velo: stream: negative MaxFrame -1"},
		{"negative read buffer", stream.Options{ReadBuffer: -5}, "velo: stream: negative ReadBuffer -5"},
		{"negative max pending", stream.Options{MaxPending: -7}, "velo: stream: negative MaxPending -7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// A group made with bad options refuses every connection and listener
// with the options' error, and closes them.
func TestGroupRefusesBadOptions(t *testing.T) {
	g := stream.NewGroup(stream.Options{ReadBuffer: -1})
	defer g.Close()
	const want = "velo: stream: negative ReadBuffer -1"
	a, b := net.Pipe()
	defer b.Close()
	if _, err := g.Serve(a, func(transport.Conn) transport.Handler { return nil }); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Serve = %v, want %q", err, want)
	}
	if _, err := a.Write([]byte{0}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("the refused conn is still open: Write = %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Accept(ln, nil, 0, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Accept = %v, want %q", err, want)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the refused listener is still open: Accept = %v", err)
	}
}

func TestNewPanicsOnBadOptions(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	defer func() {
		err, _ := recover().(error)
		if err == nil || !strings.Contains(err.Error(), "negative MaxPending -1") {
			t.Errorf("New panicked with %v, want the options' error", err)
		}
	}()
	stream.New(a, func(transport.Conn) transport.Handler { return nil }, stream.Options{MaxPending: -1})
}
