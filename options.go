package velo

import (
	"context"
	"errors"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/internal/wire"
)

// Defaults applied to the zero fields of Options.
const (
	// DefaultKeepaliveInterval is how long a connection may stay silent
	// before velo pings it.
	DefaultKeepaliveInterval = 2 * time.Second
	// DefaultKeepaliveTimeout is how long a connection may go without
	// receiving a frame before its peer is declared lost.
	DefaultKeepaliveTimeout = 7 * time.Second
	// DefaultHandshakeTimeout bounds the _hello exchange.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultDialTimeout bounds one connection attempt, handshake
	// included.
	DefaultDialTimeout = 10 * time.Second
	// DefaultReconnectBackoff is the first pause before retrying a peer.
	DefaultReconnectBackoff = 50 * time.Millisecond
	// DefaultMaxReconnectBackoff is the longest pause before retrying a
	// peer.
	DefaultMaxReconnectBackoff = 5 * time.Second
	// DefaultMaxHeaders is the most headers on one request.
	DefaultMaxHeaders = wire.DefaultMaxHeaders // 64
	// DefaultMaxHeaderBytes bounds the keys and values of one request's
	// headers, in bytes.
	DefaultMaxHeaderBytes = wire.DefaultMaxHeaderBytes // 16 KiB
	// DefaultMaxCallsInFlight is the most calls waiting on one peer.
	DefaultMaxCallsInFlight = 65536
	// DefaultEjectAfter is how long an instance may keep calls waiting
	// in silence before routing leaves it out.
	DefaultEjectAfter = 400 * time.Millisecond
)

// maxHeaders is the largest MaxHeaders: a request carries its count of
// headers in 16 bits.
const maxHeaders = 1<<16 - 1

// Options tune a Messenger. The zero value of each field means its
// default; Validate reports the values that are wrong, and Build refuses
// them.
type Options struct {
	// KeepaliveInterval is how long a connection may stay silent before
	// velo pings it. Zero: DefaultKeepaliveInterval (2 s).
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long a connection may go without receiving
	// any frame before its peer is declared lost and its calls fail with
	// ErrPeerLost; it must exceed KeepaliveInterval. A dead or silent
	// peer is detected within this plus half the interval. Zero:
	// DefaultKeepaliveTimeout (7 s, so within 8 s by default).
	KeepaliveTimeout time.Duration
	// HandshakeTimeout bounds the _hello exchange on a new connection, in
	// both directions: an inbound connection that does not say hello in
	// time is closed. Zero: DefaultHandshakeTimeout (5 s).
	HandshakeTimeout time.Duration
	// DialTimeout bounds one connection attempt, handshake included.
	// Zero: DefaultDialTimeout (10 s).
	DialTimeout time.Duration
	// ReconnectBackoff is the pause before retrying a peer after a failed
	// connection attempt; it doubles with each consecutive failure up to
	// MaxReconnectBackoff, which must not be below it. Zero:
	// DefaultReconnectBackoff (50 ms) and DefaultMaxReconnectBackoff
	// (5 s).
	ReconnectBackoff    time.Duration
	MaxReconnectBackoff time.Duration
	// MaxHeaders and MaxHeaderBytes bound the headers of one request, sent
	// or received; MaxHeaders is at most 65535. Zero: DefaultMaxHeaders
	// (64) and DefaultMaxHeaderBytes (16 KiB).
	MaxHeaders     int
	MaxHeaderBytes int
	// MaxCallsInFlight bounds the AMSync, Unary and TypedUnary calls this
	// instance has waiting on one peer at once. Zero:
	// DefaultMaxCallsInFlight (65536).
	MaxCallsInFlight int
	// RejectCallsOverLimit makes a call beyond MaxCallsInFlight fail at
	// once with ErrBusy; by default it waits for a call to end (or for
	// its ctx).
	RejectCallsOverLimit bool

	// Balancer picks the instance of each routed call (a send with
	// .Service, or with no target). Nil: LeastLoaded().
	Balancer Balancer
	// Retry is the policy of the calls that set none with .Retry. Zero:
	// one attempt, no retry.
	Retry RetryPolicy
	// RetryBudget bounds the retries of all calls together, so that a
	// failing service is not flooded with them. Zero fields take their
	// defaults (DefaultRetryRatio, DefaultMinRetriesPerSecond).
	RetryBudget RetryBudget
	// EjectAfter is how long an instance may keep calls of ours waiting
	// without sending us any frame before routing stops picking it; a
	// ping goes out when half of it passed, so an instance that is only
	// slow answers it and stays. It must be below KeepaliveTimeout.
	// Zero: DefaultEjectAfter (400 ms), or half KeepaliveTimeout if that
	// is shorter.
	EjectAfter time.Duration

	// Authorize, when set, decides whether the peer with the given
	// identity (Context.Identity: "" when its connection authenticated
	// none) may call handler. It is called on the connection's receive
	// path for every request but the handshake, before the request takes
	// a mailbox slot, so it must be quick; the reserved handlers
	// (IsSystemHandler) are asked about too. A non-nil error refuses the
	// request: the caller gets ErrPermissionDenied (ErrUnauthenticated if
	// the identity is empty, or if the error is ErrUnauthenticated), the
	// handler never runs, and the refusal is counted (Denied) and logged
	// at Warn, rate-limited. ctx ends when the messenger stops. Nil:
	// every request is allowed.
	Authorize func(ctx context.Context, identity, handler string) error
	// MaxPayload is the largest request or response this instance
	// accepts, and announces in its hello: one larger than ChunkSize
	// travels as chunk frames of at most 64 KiB, which interleave with
	// the connection's other frames, so that a small call waits behind
	// one chunk at most, never behind the whole payload. Zero:
	// DefaultMaxPayload (1 GiB); at most MaxMaxPayload. A peer that
	// announces more is refused before anything is allocated.
	MaxPayload int
	// ServeStats lets other instances read this one's Stats
	// (Messenger.RemoteStats), through the _stats handler, which
	// Authorize sees like any other. Off by default.
	ServeStats bool
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: negative DialTimeout -1s"), and the pairs
// of fields that contradict each other once the zero ones took their
// defaults.
func (o Options) Validate() error {
	err := errors.Join(
		optcheck.NotNegative("", "KeepaliveInterval", o.KeepaliveInterval),
		optcheck.NotNegative("", "KeepaliveTimeout", o.KeepaliveTimeout),
		optcheck.NotNegative("", "HandshakeTimeout", o.HandshakeTimeout),
		optcheck.NotNegative("", "DialTimeout", o.DialTimeout),
		optcheck.NotNegative("", "ReconnectBackoff", o.ReconnectBackoff),
		optcheck.NotNegative("", "MaxReconnectBackoff", o.MaxReconnectBackoff),
		optcheck.NotNegative("", "MaxHeaders", o.MaxHeaders),
		optcheck.AtMost("", "MaxHeaders", o.MaxHeaders, maxHeaders, "the most a request carries"),
		optcheck.NotNegative("", "MaxHeaderBytes", o.MaxHeaderBytes),
		optcheck.NotNegative("", "MaxCallsInFlight", o.MaxCallsInFlight),
		optcheck.NotNegative("", "EjectAfter", o.EjectAfter),
		optcheck.NotNegative("", "MaxPayload", o.MaxPayload),
		optcheck.AtMost("", "MaxPayload", o.MaxPayload, MaxMaxPayload, "the most a payload may be"),
		o.Retry.validate("Retry."),
		o.RetryBudget.validate(),
	)
	if err != nil {
		return err
	}
	d := o.withDefaults()
	if d.KeepaliveTimeout <= d.KeepaliveInterval {
		err = errors.Join(err, optcheck.Errorf("", "KeepaliveTimeout %v%s does not exceed KeepaliveInterval %v%s",
			d.KeepaliveTimeout, defaultNote(o.KeepaliveTimeout), d.KeepaliveInterval, defaultNote(o.KeepaliveInterval)))
	}
	if o.EjectAfter != 0 && d.EjectAfter >= d.KeepaliveTimeout {
		err = errors.Join(err, optcheck.Errorf("", "EjectAfter %v%s is not below KeepaliveTimeout %v%s",
			d.EjectAfter, defaultNote(o.EjectAfter), d.KeepaliveTimeout, defaultNote(o.KeepaliveTimeout)))
	}
	if d.MaxReconnectBackoff < d.ReconnectBackoff {
		err = errors.Join(err, optcheck.Errorf("", "MaxReconnectBackoff %v%s is below ReconnectBackoff %v%s",
			d.MaxReconnectBackoff, defaultNote(o.MaxReconnectBackoff), d.ReconnectBackoff, defaultNote(o.ReconnectBackoff)))
	}
	return err
}

// defaultNote marks, in an error, a value that the field's default stood in for.
func defaultNote(v time.Duration) string {
	if v == 0 {
		return " (the default)"
	}
	return ""
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.KeepaliveInterval, DefaultKeepaliveInterval)
	def(&o.KeepaliveTimeout, DefaultKeepaliveTimeout)
	def(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.ReconnectBackoff, DefaultReconnectBackoff)
	def(&o.MaxReconnectBackoff, DefaultMaxReconnectBackoff)
	def(&o.EjectAfter, min(DefaultEjectAfter, o.KeepaliveTimeout/2))
	if o.MaxHeaders == 0 {
		o.MaxHeaders = DefaultMaxHeaders
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxCallsInFlight == 0 {
		o.MaxCallsInFlight = DefaultMaxCallsInFlight
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	return o
}

// Limits of payloads that travel in chunks (Options.MaxPayload).
const (
	// DefaultMaxPayload is Options.MaxPayload's default: 1 GiB.
	DefaultMaxPayload = 1 << 30
	// MaxMaxPayload bounds Options.MaxPayload: 2 GiB less a byte.
	MaxMaxPayload = 1<<31 - 1
	// ChunkSize is the size above which a request or response is
	// chunked (less if the peer's frame limit is smaller): 256 KiB. Its
	// chunks are frames of at most 64 KiB.
	ChunkSize = 256 << 10
)
