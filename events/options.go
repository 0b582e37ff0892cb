package events

import (
	"errors"
	"log/slog"
	"time"

	"github.com/velo-messenger/velo/internal/optcheck"
)

// Defaults applied to the zero fields of Options.
const (
	// DefaultCacheSize is how many outcomes of completed remote events
	// are kept.
	DefaultCacheSize = 4096
	// DefaultOwnerLostAfter bounds the attempts to reach a peer.
	DefaultOwnerLostAfter = 10 * time.Second
	// DefaultSendTimeout bounds one send of the manager's own goroutines.
	DefaultSendTimeout = 5 * time.Second
	// DefaultRetainCompleted is how many completed local events keep
	// their outcome.
	DefaultRetainCompleted = 1024
)

// Options configures a Manager. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// CacheSize is the number of recently completed remote events whose
	// outcome is kept, so awaiting them again needs no network message.
	// Zero: DefaultCacheSize (4096).
	CacheSize int

	// OwnerLostAfter bounds how long the manager keeps trying to reach a
	// peer it cannot send to (to re-subscribe to its events, or to tell it
	// an event completed) before giving up: awaiters of that peer's events
	// then fail with ErrOwnerLost and what was queued for it is dropped.
	// Zero: DefaultOwnerLostAfter (10 s).
	OwnerLostAfter time.Duration

	// SendTimeout bounds one Network.Send made by the manager's own
	// goroutines. A send never gets longer than OwnerLostAfter either, nor
	// than what is left of it while a peer is in trouble. Zero:
	// DefaultSendTimeout (5 s).
	SendTimeout time.Duration

	// RetainCompleted is how many completed local events keep their outcome
	// before their slots are reused: awaiting one of the last
	// RetainCompleted completed events answers at once with its outcome;
	// an older handle gets ErrEventGone. Zero: DefaultRetainCompleted
	// (1024); a negative value means none (reuse a slot as soon as its
	// event completes).
	RetainCompleted int

	// Logger receives the manager's rare diagnostics (dropped messages,
	// peers declared lost). Nil: discard.
	Logger *slog.Logger
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: events: negative CacheSize -1").
func (o Options) Validate() error {
	return errors.Join(
		optcheck.NotNegative("events", "CacheSize", o.CacheSize),
		optcheck.NotNegative("events", "OwnerLostAfter", o.OwnerLostAfter),
		optcheck.NotNegative("events", "SendTimeout", o.SendTimeout),
	)
}

// withDefaults fills the zero fields of options that Validate accepted.
func (o Options) withDefaults() Options {
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.OwnerLostAfter == 0 {
		o.OwnerLostAfter = DefaultOwnerLostAfter
	}
	if o.SendTimeout == 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	switch {
	case o.RetainCompleted == 0:
		o.RetainCompleted = DefaultRetainCompleted
	case o.RetainCompleted < 0:
		o.RetainCompleted = 0 // documented: none
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
