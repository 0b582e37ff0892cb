package tcp_test

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(*testing.T) transporttest.Factory {
		return transporttest.Factory{
			New: func() transport.Transport { return tcp.New(tcp.Options{MaxFrame: 1 << 20}) },
			RawConn: func(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
		}
	})
}
