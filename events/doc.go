// Package events provides distributed events: one-shot signals that one
// velo instance owns and any instance can await.
//
// # Local events
//
// A Manager creates events. An Event completes exactly once, either by
// Trigger (success) or by Poison (failure with a reason); a second
// completion returns ErrAlreadyCompleted. Anyone holding the event's Handle
// can ask the manager for an Awaiter and Wait on it:
//
//	ev, err := m.NewEvent()
//	aw, err := m.Awaiter(ev.Handle())
//	go func() { _ = ev.Trigger() }()
//	err = aw.Wait(ctx) // nil, a *PoisonError, or ctx's error
//
// Wait returns nil after Trigger, and after Poison a *PoisonError whose
// Reason is exactly the string given to Poison (errors.Is(err, ErrPoisoned)
// holds; PoisonReason extracts it). Awaiting an event that completed
// recently answers at once with its outcome.
//
// An Event is a small object pointing at a slot in the manager. When the
// program drops an Event that never completed, the garbage collector's
// cleanup poisons it with DroppedReason, so no awaiter waits forever for an
// event nobody can complete any more.
//
// # Handles
//
// A Handle is a comparable value of 32 bytes: the owner's peer.ID, the
// owner's epoch, the slot index and the slot's generation. Slots are reused
// for new events with the next generation, so a handle kept past its
// event's lifetime is recognised as stale (ErrEventGone) and never sees a
// newer event's outcome. The epoch is drawn at random by each Manager: an
// instance restarted under the same ID refuses the handles of its earlier
// incarnation (ErrOwnerRestarted, which matches ErrOwnerLost) although
// their index and generation repeat. Handles have a text form (String,
// ParseHandle, MarshalText) and a binary form (MarshalBinary, AppendBinary,
// 32 bytes), so they travel inside MessagePack or JSON payloads unchanged.
//
// # Remote events
//
// An instance awaits another instance's event with the same call,
// Awaiter(h): the manager keeps one proxy per remote event, subscribed to
// the owner once, however many local goroutines wait on it. Lookups go
// through three tiers: a bounded cache of recently completed remote events
// (no message), the active proxies (share the subscription, no message),
// and the network (one subscription to the owner). A non-owner may complete
// an event with Manager.Trigger or Manager.Poison, which ask the owner.
//
// The package does not import the messenger. It sends through the small
// Network interface and receives through Manager.Deliver; the messenger
// hands every one-way message under the reserved names SubscribeHandler,
// TriggerHandler and CompleteHandler to Deliver on its receive path (no
// handler is registered under them), and reports
// connections with PeerConnected and PeerDisconnected.
//
// When an owner cannot be reached, the manager keeps trying to re-subscribe
// for Options.OwnerLostAfter, then fails the owner's awaiters with
// ErrOwnerLost instead of leaving them waiting. The protocol, the message
// layouts and every failure rule are described in docs/events.md.
package events
