// Package transporttest is the conformance suite that every velo transport
// passes: one table of scenarios, run by a small test in each transport's
// package against real instances (velo.Messenger) talking over that
// transport.
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transporttest.Factory {
//			return transporttest.Factory{New: func() transport.Transport {
//				return tcp.New(tcp.Options{MaxFrame: 1 << 20})
//			}}
//		})
//	}
//
// The factory is made again for every scenario, so a scenario may get an
// environment of its own (a NATS server, a proxy) and tear it down with
// t.Cleanup. Scenarios run one after the other and leave no goroutine
// behind: run them under goleak.VerifyTestMain.
//
// Like net/http/httptest, this package is meant for tests only; it
// imports the root velo package, which production code of a transport
// must never do.
package transporttest

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport"
)

// Factory makes the transports of one scenario.
type Factory struct {
	// New returns a new transport, not yet listening. Every transport it
	// returns must be able to reach every other one. Required.
	New func() transport.Transport
	// RawConn opens a connection to a listening transport's address
	// through which the suite writes malformed bytes: a socket for
	// stream transports. Reads return an error or io.EOF once the other
	// side closed the connection. Nil: the suite dials addr with a
	// transport from New and writes the bytes with Conn.WriteFrame,
	// unchecked, which reaches the receiving side's frame parser on every
	// transport.
	RawConn func(ctx context.Context, addr string) (io.ReadWriteCloser, error)
	// Kill ends a transport abruptly, as if its process died, while its
	// messenger goes on. Nil: the transport's Close.
	Kill func(tr transport.Transport)
	// Options are the messenger options of every instance. Zero fields get
	// the suite's defaults (a short reconnect backoff).
	Options velo.Options
}

func (f Factory) withDefaults() Factory {
	if f.Kill == nil {
		f.Kill = func(tr transport.Transport) { tr.Close() }
	}
	if f.Options.ReconnectBackoff == 0 {
		f.Options.ReconnectBackoff = 10 * time.Millisecond
	}
	if f.Options.MaxReconnectBackoff == 0 {
		f.Options.MaxReconnectBackoff = 200 * time.Millisecond
	}
	if f.Options.MaxPayload == 0 {
		// Above every transport's frame limit in the suite (1 MiB on
		// NATS, 64 KiB with a small max_payload) and the chunk size, so
		// that the largest payloads travel in chunks everywhere.
		f.Options.MaxPayload = SuiteMaxPayload
	}
	return f
}

// SuiteMaxPayload is the messengers' MaxPayload in the suite, unless
// Factory.Options sets one: the "max" payloads are this large.
const SuiteMaxPayload = 3 << 20

// Scenario is one entry of the suite.
type Scenario struct {
	Name string
	Run  func(t *testing.T, f Factory)
}

// Scenarios returns the suite, in the order Run runs it.
func Scenarios() []Scenario {
	return []Scenario{
		{"conn-contract", testConnContract},
		{"patterns", testPatterns},
		{"payload-sizes", testPayloadSizes},
		{"payload-too-large", testPayloadTooLarge},
		{"concurrent-senders", testConcurrentSenders},
		{"mesh", testMesh},
		{"peer-killed", testPeerKilled},
		{"peer-restarted", testPeerRestarted},
		{"deadline", testDeadline},
		{"cancel", testCancel},
		{"shutdown-callee", testShutdownCallee},
		{"shutdown-caller", testShutdownCaller},
		{"malformed-input", testMalformedInput},
		{"streams", testStreams},
		{"large-interleaved", testLargeInterleaved},
		{"large-reuse", testLargeReuse},
	}
}

// Run runs every scenario as a subtest, with a factory made by mk for
// each.
func Run(t *testing.T, mk func(t *testing.T) Factory) {
	RunScenarios(t, mk)
}

// RunScenarios runs the named scenarios (all when names is empty), for a
// transport that covers part of the suite again in another setting.
func RunScenarios(t *testing.T, mk func(t *testing.T) Factory, names ...string) {
	t.Helper()
	for _, s := range Scenarios() {
		if len(names) > 0 && !slices.Contains(names, s.Name) {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			f := mk(t)
			if f.New == nil {
				t.Fatal("transporttest: Factory.New is nil")
			}
			s.Run(t, f.withDefaults())
		})
	}
}
