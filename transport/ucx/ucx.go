// Package ucx carries velo frames over UCX (libucx) active messages: TCP
// through UCX's own stack, or shared memory between processes on one host,
// with UCX's rendezvous protocol for large frames, which it pulls straight
// into the receiver's buffer.
//
// The package needs libucx and cgo, and the build tag ucx:
//
//	apt-get install -y libucx-dev   # Debian, Ubuntu: UCX 1.13 or later
//	go build -tags ucx ./...
//
// Without the tag (or without cgo) the package still builds, so that a
// program that lists it among its transports compiles everywhere, and New
// returns ErrUnavailable, which says how to get it.
//
// Each transport owns one UCP context and one worker, driven by one owner
// goroutine that makes every UCX call: progress, sends, endpoint setup and
// teardown. Other goroutines hand it frames through a queue and never lock
// around UCX. The owner spins for Options.Spin after its last piece of work
// and then sleeps in the Go netpoller on the worker's event file
// descriptor. Each connection is one UCP endpoint; frames travel as active
// messages with a sequence number, and credit-based flow control (a window
// per connection) gives backpressure, as TCP does for the stream transports.
//
// docs/transports.md tells how to install UCX, which environment variables
// matter, and what each mode detects.
package ucx

import (
	"errors"
	"log/slog"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/wire"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "ucx"

// Defaults applied to the zero fields of Options.
const (
	// DefaultListen listens on loopback, on a port chosen by the system.
	DefaultListen = "127.0.0.1:0"
	// DefaultTransports is UCX's transport list when Options.Transports
	// is empty and UCX_TLS is not set: TCP only, where UCX reports a
	// failed peer itself.
	DefaultTransports = "tcp"
	// SharedMemory is the transport list for instances on one host:
	// shared memory between processes, loopback within one, and TCP for
	// the connection setup (UCX needs it to connect by address).
	SharedMemory = "tcp,sm,self"
	// DefaultDialTimeout bounds one connection attempt.
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxFrame is the largest frame accepted, in bytes: 16 MiB.
	DefaultMaxFrame = wire.DefaultMaxFrame
	// DefaultWindow is how many bytes a peer may send on one connection
	// before this side has handled them: 4 MiB.
	DefaultWindow = 4 << 20
	// DefaultMaxConns bounds the accepted connections open at once.
	DefaultMaxConns = 4096
	// DefaultSpin is how long the owner goroutine keeps polling UCX after
	// its last piece of work before it sleeps on the event fd.
	DefaultSpin = 50 * time.Microsecond
)

// MaxWindow is the largest Window: 1 GiB.
const MaxWindow = 1 << 30

// ErrUnavailable is returned by New in a binary built without UCX.
var ErrUnavailable = errors.New("velo: ucx: this binary was built without UCX support: install libucx-dev (apt-get install -y libucx-dev) and build with -tags ucx (cgo enabled)")

// Options configure the transport. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// Listen is the address to listen on, IP:port. Empty: DefaultListen
	// ("127.0.0.1:0").
	Listen string
	// Advertise is the address given to peers, when it differs from the
	// listening address. Empty: the listener's address.
	Advertise string
	// Transports is UCX's transport list (what UCX_TLS takes): "tcp"
	// (DefaultTransports) or "tcp,sm,self" (SharedMemory) for instances on
	// one host. It must include tcp, which UCX uses to connect by address.
	// Empty: UCX_TLS if set, else DefaultTransports.
	//
	// With tcp alone, endpoints use UCX's peer error handling: a peer that
	// dies is reported by UCX. Shared-memory lanes do not support it, so
	// with sm (or any list but plain tcp) UCX reports nothing and velo's
	// keepalive finds a dead peer, within Options.KeepaliveTimeout of the
	// messenger. A peer that shuts down says so in both modes, and its
	// calls fail at once.
	Transports string
	// NetDevices is UCX's list of network devices (what UCX_NET_DEVICES
	// takes): "lo" keeps UCX to loopback, where it otherwise adds a lane
	// on every other interface too, even to reach 127.0.0.1. Empty:
	// UCX_NET_DEVICES if set, else every device.
	NetDevices string
	// DialTimeout bounds one connection attempt. Zero: DefaultDialTimeout
	// (5 s).
	DialTimeout time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB). A frame announced larger is refused before
	// anything is allocated for it, and the connection closed.
	MaxFrame int
	// Window is how many bytes a peer may send on one connection before
	// this side has handled them (and how many this side sends to a peer
	// that allows more). Zero: DefaultWindow (4 MiB); at most MaxWindow.
	Window int
	// MaxConns bounds the accepted connections open at once; further
	// connection requests are rejected. Zero: DefaultMaxConns (4096).
	MaxConns int
	// Spin is how long the owner goroutine polls UCX after its last piece
	// of work before sleeping on the worker's event fd: a wake-up from
	// sleep costs tens of microseconds on a VM, a spin costs CPU. Zero:
	// DefaultSpin (50 µs); negative: never spin. Each turn of the spin
	// lets the process's other goroutines run first; while GOMAXPROCS is
	// 1 a turn that leaves nothing queued for the owner also yields the
	// CPU to other processes (the peer among them, when both are pinned
	// to one CPU).
	Spin time.Duration
	// Logger receives what the transport notices about peers (a message
	// for a connection it does not know, a failed endpoint). Nil: the
	// messenger's logger.
	Logger *slog.Logger
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: ucx: negative Window -1").
func (o Options) Validate() error {
	return errors.Join(
		optcheck.NotNegative(Name, "DialTimeout", o.DialTimeout),
		optcheck.NotNegative(Name, "MaxFrame", o.MaxFrame),
		optcheck.NotNegative(Name, "Window", o.Window),
		optcheck.AtMost(Name, "Window", o.Window, MaxWindow, "the most a connection's credit holds"),
		optcheck.NotNegative(Name, "MaxConns", o.MaxConns),
	)
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Spin == 0 {
		o.Spin = DefaultSpin
	}
	return o
}
