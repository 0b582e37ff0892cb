package mem_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The in-memory transport has no sockets: the suite's malformed input goes
// through a Conn of its own, which writes bytes unchecked.
func TestConformance(t *testing.T) {
	transporttest.Run(t, func(*testing.T) transporttest.Factory {
		n := mem.NewNetwork()
		return transporttest.Factory{
			New: func() transport.Transport { return mem.New(n, mem.Options{MaxFrame: 1 << 20}) },
		}
	})
}
