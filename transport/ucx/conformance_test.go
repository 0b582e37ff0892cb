//go:build ucx && cgo

package ucx_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/transporttest"
	"github.com/velo-messenger/velo/transport/ucx"
)

func TestMain(m *testing.M) {
	testchild.Main(map[string]func() int{peerRole: runPeer})
	goleak.VerifyTestMain(m)
}

// newTransport is a UCX transport over the given UCX transports, with
// 1 MiB frames, failing the test if UCX cannot start.
func newTransport(t testing.TB, tls string) *ucx.Transport {
	t.Helper()
	tr, err := ucx.New(ucx.Options{Transports: tls, MaxFrame: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestConformanceTCP(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		return transporttest.Factory{New: func() transport.Transport { return newTransport(t, ucx.DefaultTransports) }}
	})
}

func TestConformanceSharedMemory(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		return transporttest.Factory{New: func() transport.Transport { return newTransport(t, ucx.SharedMemory) }}
	})
}
