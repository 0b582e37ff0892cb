package grpc_test

import (
	"context"
	"io"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/velo-messenger/velo/transport"
	velogrpc "github.com/velo-messenger/velo/transport/grpc"
	"github.com/velo-messenger/velo/transport/grpc/internal/velopb"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(*testing.T) transporttest.Factory {
		return transporttest.Factory{
			New:     func() transport.Transport { return velogrpc.New(velogrpc.Options{MaxFrame: 1 << 20}) },
			RawConn: rawStream,
		}
	})
}

// rawStream opens a Connect stream by hand: each Write is sent as one
// message, unchecked.
func rawStream(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	life, cancel := context.WithCancel(context.Background())
	st, err := velopb.NewVeloClient(cc).Connect(life)
	if err != nil {
		cancel()
		cc.Close()
		return nil, err
	}
	return &rawConn{st: st, cancel: cancel, cc: cc}, nil
}

type rawConn struct {
	st     grpc.BidiStreamingClient[velopb.Chunk, velopb.Chunk]
	cancel context.CancelFunc
	cc     *grpc.ClientConn
	buf    []byte
}

func (c *rawConn) Write(p []byte) (int, error) {
	if err := c.st.Send(&velopb.Chunk{Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		m, err := c.st.Recv()
		if err != nil {
			return 0, err
		}
		c.buf = m.Data
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *rawConn) Close() error {
	c.cancel()
	return c.cc.Close()
}
