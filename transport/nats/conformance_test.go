package nats_test

import (
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/transport"
	velonats "github.com/velo-messenger/velo/transport/nats"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTransport is a transport on the server at url, reconnecting quickly.
func newTransport(url string, maxFrame int) *velonats.Transport {
	return velonats.New(velonats.Options{
		URL:         url,
		MaxFrame:    maxFrame,
		NATSOptions: []natsgo.Option{natsgo.ReconnectWait(20 * time.Millisecond)},
	})
}

// Each scenario gets a server of its own; the transports (1 MiB frames
// configured) are held to its default max_payload of 1 MiB, less the
// transport's header.
func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		ns := velonats.StartTestServer(t, 0)
		return transporttest.Factory{
			New: func() transport.Transport { return newTransport(ns.URL(), 1<<20) },
		}
	})
}

// With a small max_payload (64 KiB), the largest frame shrinks to what a
// message holds, and the payload scenarios still pass: the largest
// payload fits, one byte more is refused with ErrPayloadTooLarge.
func TestConformanceSmallMaxPayload(t *testing.T) {
	transporttest.RunScenarios(t, func(t *testing.T) transporttest.Factory {
		ns := velonats.StartTestServer(t, 64<<10)
		return transporttest.Factory{
			New: func() transport.Transport { return newTransport(ns.URL(), 1<<20) },
		}
	}, "conn-contract", "payload-sizes", "payload-too-large", "concurrent-senders")
}
