package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/velo-messenger/velo"
)

// Server-streaming, beside grpc-go's: the client asks the server for n
// items of a size, and the measurement ends when the last one arrived.
// For velo the client opens a stream (velo.OpenStream) and the server's
// "streamto" handler attaches and sends; for grpc-go, a server-streaming
// method of the raw-bytes service. Both count items as received by the
// client.

const (
	streamToHandler = "streamto" // Unary: attach to the stream in the payload and send
	grpcItemsMethod = "/velobench.Echo/Items"
)

// appendStreamReq is a streaming request: n items of size bytes, and for
// velo the stream's handle.
func appendStreamReq(b []byte, n, size int, h []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	return append(b, h...)
}

func parseStreamReq(b []byte) (n, size int, h []byte, err error) {
	if len(b) < 8 {
		return 0, 0, nil, fmt.Errorf("stream request of %d bytes", len(b))
	}
	return int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:])), b[8:], nil
}

// streamToHandlerOf is the velo server's side: it attaches and sends in a
// goroutine of its own, so that the request's answer does not wait for
// the stream.
func streamToHandlerOf(m *velo.Messenger) *velo.HandlerBuilder {
	return velo.UnaryHandler(streamToHandler, func(ctx context.Context, c *velo.Context) ([]byte, error) {
		n, size, hb, err := parseStreamReq(c.Payload)
		if err != nil {
			return nil, err
		}
		var h velo.StreamHandle
		if err := h.UnmarshalBinary(hb); err != nil {
			return nil, err
		}
		s, err := velo.AttachStream[[]byte](ctx, m, h)
		if err != nil {
			return nil, err
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), barrierTimeout)
			defer cancel()
			item := makePayload(size)
			for range n {
				if err := s.Send(ctx, item); err != nil {
					s.CloseWithError(err)
					return
				}
			}
			s.Close()
		}()
		return nil, nil
	})
}

type veloStream struct{ *veloConn }

func (c *veloStream) Stream(ctx context.Context, payload []byte, n int) error {
	r, err := velo.OpenStream[[]byte](c.m, velo.StreamOptions{})
	if err != nil {
		return err
	}
	defer r.Cancel()
	hb, _ := r.Handle().MarshalBinary()
	if _, err := c.m.Unary(streamToHandler).RawPayload(appendStreamReq(nil, n, len(payload), hb)).Instance(c.server).Send(ctx); err != nil {
		return err
	}
	return countItems(func() ([]byte, error) {
		b, err := r.Recv(ctx)
		if err == io.EOF {
			return nil, errEnd
		}
		return b, err
	}, len(payload), n)
}

// grpcItemsStream is the server-streaming method of the raw-bytes service.
var grpcItemsStream = grpc.StreamDesc{
	StreamName:    "Items",
	ServerStreams: true,
	Handler: func(_ any, ss grpc.ServerStream) error {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		n, size, _, err := parseStreamReq(req)
		if err != nil {
			return err
		}
		item := makePayload(size)
		for range n {
			if err := ss.SendMsg(item); err != nil {
				return err
			}
		}
		return nil
	},
}

type grpcStreamClient struct{ *grpcClient }

func dialGRPCStream(ctx context.Context, e env, addr string) (Client, error) {
	c, err := dialGRPC(ctx, e, addr)
	if err != nil {
		return nil, err
	}
	return &grpcStreamClient{c.(*grpcClient)}, nil
}

func (c *grpcStreamClient) Stream(ctx context.Context, payload []byte, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := c.cc.NewStream(ctx, &grpcItemsStream, grpcItemsMethod)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(appendStreamReq(nil, n, len(payload), nil)); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return countItems(func() ([]byte, error) {
		var b []byte
		if err := cs.RecvMsg(&b); errors.Is(err, io.EOF) {
			return nil, errEnd
		} else if err != nil {
			return nil, err
		}
		return b, nil
	}, len(payload), n)
}

// errEnd is what a countItems source returns at the end of the stream.
var errEnd = errors.New("end of stream")

// countItems reads items from next until errEnd and checks that n of
// them came, each of size bytes.
func countItems(next func() ([]byte, error), size, n int) error {
	got := 0
	for {
		b, err := next()
		if err == errEnd {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d items: %w", got, err)
		}
		if len(b) != size {
			return fmt.Errorf("%w: item of %d bytes, want %d", errShortEcho, len(b), size)
		}
		got++
	}
	if got != n {
		return fmt.Errorf("%d items arrived, want %d", got, n)
	}
	return nil
}
