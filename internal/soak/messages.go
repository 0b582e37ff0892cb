package soak

import (
	"context"
	"sync"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport"
)

// The load and its bounds.
const (
	workers     = 4                                    // calling goroutines per child
	pace        = 4 * time.Millisecond                 // pause of a worker between calls
	callTimeout = 2 * time.Second                      // every call's ctx deadline
	margin      = 2 * time.Second                      // a call must end by its deadline plus this
	bigEvery    = 50                                   // one echo in this many carries 32 KiB
	control     = 30 * time.Second                     // deadline of the test's control calls
	settle      = 20 * time.Second                     // how long the children get to return to baseline
	heapSlack   = 4 << 20                              // heap bytes over baseline still "near" it
	sampleMax   = 5                                    // samples of hangs and bad results kept per child
	goroutines0 = 8                                    // goroutines over baseline still "near" it, plus 2 per peer
	stopWait    = callTimeout + margin + 5*time.Second // how long halt waits for the workers
)

// nearGoroutines is how many goroutines over its baseline a child of a
// run with n children may keep: two per peer connection, and a few.
func nearGoroutines(n int) int { return 2*(n-1) + goroutines0 }

// options make faults visible quickly: a silent peer is lost within about
// a second, and a lost one is dialed again within half a second.
var options = velo.Options{
	KeepaliveInterval:   250 * time.Millisecond,
	KeepaliveTimeout:    time.Second,
	HandshakeTimeout:    time.Second,
	DialTimeout:         2 * time.Second,
	ReconnectBackoff:    20 * time.Millisecond,
	MaxReconnectBackoff: 500 * time.Millisecond,
}

// The call kinds of the load, with their weights.
var kinds = []struct {
	name   string
	weight int
}{
	{"amsync", 35}, // AMSync to soak.ingest: the exactly-once check
	{"unary", 25},  // Unary to soak.echo
	{"typed", 20},  // TypedUnary to soak.add
	{"amsend", 10}, // AMSend to soak.note
	{"event", 10},  // an event of ours awaited remotely by soak.watch
}

// Control messages, MessagePack on the wire.
type peerSpec struct {
	Index int    `msgpack:"index"`
	ID    string `msgpack:"id"`
	Addr  string `msgpack:"addr"` // where it listens
	Via   string `msgpack:"via"`  // the proxy this child reaches it through
}

type childConfig struct {
	Index int        `msgpack:"index"`
	Peers []peerSpec `msgpack:"peers"`
}

// Stats are a child's goroutines and live heap, after two collections.
type Stats struct {
	Goroutines int    `msgpack:"goroutines"`
	HeapAlloc  uint64 `msgpack:"heap"`
}

type kindStats struct {
	Calls  int            `msgpack:"calls"`
	OK     int            `msgpack:"ok"`
	Failed map[string]int `msgpack:"failed"` // by velo error code
}

type stopReply struct {
	Kinds      map[string]*kindStats `msgpack:"kinds"`
	Hung       int                   `msgpack:"hung"`
	Bad        int                   `msgpack:"bad"`
	Samples    []string              `msgpack:"samples"` // of hangs and bad results
	Notes      int64                 `msgpack:"notes"`   // AMSends received
	MaxOverrun time.Duration         `msgpack:"overrun"` // the longest a call outlived its deadline
}

type idReport struct {
	Acked   []uint64 `msgpack:"acked"`   // AMSync ids this child sent that returned nil
	Handled []uint64 `msgpack:"handled"` // ids its soak.ingest ran for
	Twice   []uint64 `msgpack:"twice"`   // ids it ran for more than once
}

type addIn struct {
	A, B int64
	Tag  string
}

type addOut struct {
	Sum int64
	Tag string
}

// routes is the children's transport: TCP, except that a dial to a peer's
// own address goes to the proxy in front of it.
type routes struct {
	transport.Transport
	mu  sync.Mutex
	via map[string]string // guarded by mu: listening address → proxy address
}

func (r *routes) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	r.mu.Lock()
	if v, ok := r.via[addr]; ok {
		addr = v
	}
	r.mu.Unlock()
	return r.Transport.Dial(ctx, addr, bind)
}

// badResult marks a wrong result, as opposed to a velo error.
type badResult struct{ msg string }

func (e *badResult) Error() string { return e.msg }
