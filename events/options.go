package events

import (
	"errors"
	"log/slog"
	"time"
)

// Defaults applied to the zero fields of Options.
const (
	DefaultCacheSize       = 4096
	DefaultOwnerLostAfter  = 10 * time.Second
	DefaultSendTimeout     = 5 * time.Second
	DefaultRetainCompleted = 1024
)

// Options configures a Manager. The zero value means every default.
type Options struct {
	// CacheSize is the number of recently completed remote events whose
	// outcome is kept, so awaiting them again needs no network message.
	// Default 4096.
	CacheSize int

	// OwnerLostAfter bounds how long the manager keeps trying to reach a
	// peer it cannot send to (to re-subscribe to its events, or to tell it
	// an event completed) before giving up: awaiters of that peer's events
	// then fail with ErrOwnerLost and what was queued for it is dropped.
	// Default 10 s.
	OwnerLostAfter time.Duration

	// SendTimeout bounds one Network.Send made by the manager's own
	// goroutines. A send never gets longer than OwnerLostAfter either, nor
	// than what is left of it while a peer is in trouble. Default 5 s.
	SendTimeout time.Duration

	// RetainCompleted is how many completed local events keep their outcome
	// before their slots are reused: awaiting one of the last
	// RetainCompleted completed events answers at once with its outcome;
	// an older handle gets ErrEventGone. Default 1024; a negative value
	// means 0 (reuse a slot as soon as its event completes).
	RetainCompleted int

	// Logger receives the manager's rare diagnostics (dropped messages,
	// peers declared lost). Default: discard.
	Logger *slog.Logger
}

// Validate reports a field no default can fix.
func (o Options) Validate() error {
	switch {
	case o.CacheSize < 0:
		return errors.New("events: Options.CacheSize is negative")
	case o.OwnerLostAfter < 0:
		return errors.New("events: Options.OwnerLostAfter is negative")
	case o.SendTimeout < 0:
		return errors.New("events: Options.SendTimeout is negative")
	}
	return nil
}

// withDefaults fills the zero fields. Fields Validate rejects fall back to
// their defaults too, so NewManager never fails.
func (o Options) withDefaults() Options {
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.OwnerLostAfter <= 0 {
		o.OwnerLostAfter = DefaultOwnerLostAfter
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	switch {
	case o.RetainCompleted == 0:
		o.RetainCompleted = DefaultRetainCompleted
	case o.RetainCompleted < 0:
		o.RetainCompleted = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
