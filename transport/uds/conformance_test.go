package uds_test

import (
	"context"
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/transporttest"
	"github.com/velo-messenger/velo/transport/uds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(*testing.T) transporttest.Factory {
		return transporttest.Factory{
			New: func() transport.Transport { return uds.New(uds.Options{MaxFrame: 1 << 20}) },
			RawConn: func(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", addr)
			},
		}
	})
}
