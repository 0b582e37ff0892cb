package events

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/velo-messenger/velo/peer"
)

// Identities of the fuzzed manager and of the peer its messages come from.
var (
	fuzzSelf = peer.ID{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}
	fuzzFrom = peer.ID{0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb}
)

// fuzzHandlers maps the fuzzer's handler byte to a name, the last one not
// an event handler at all.
var fuzzHandlers = []string{SubscribeHandler, TriggerHandler, CompleteHandler, "_event_bogus"}

// sinkNet accepts every message and keeps nothing.
type sinkNet struct {
	mu sync.Mutex
	n  int
}

func (s *sinkNet) Send(ctx context.Context, to peer.ID, handler string, payload []byte) error {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return ctx.Err()
}

// fuzzManager returns a manager in a state every message kind can hit:
// local events 0 (pending, with a subscriber), 1 (triggered) and 2
// (poisoned), and a proxy for fuzzFrom's event 0 generation 1. The caller
// keeps the pending Event reachable, or its cleanup could poison it.
func fuzzManager() (*Manager, *Event) {
	m := NewManager(fuzzSelf, &sinkNet{}, Options{})
	pending, _ := m.NewEvent()
	trig, _ := m.NewEvent()
	pois, _ := m.NewEvent()
	_ = trig.Trigger()
	_ = pois.Poison("fuzz")
	_ = m.onSubscribe(fuzzFrom, []Handle{pending.Handle()})
	_, _ = m.Awaiter(Handle{Owner: fuzzFrom, Index: 0, Generation: 1})
	return m, pending
}

// FuzzDeliver feeds arbitrary payloads to Deliver under each handler name.
// Deliver must never panic, must refuse what it cannot decode with
// ErrMalformed, and must leave its bookkeeping consistent. Whatever the
// codecs accept must re-encode to the same bytes.
func FuzzDeliver(f *testing.F) {
	self0 := Handle{Owner: fuzzSelf, Index: 0, Generation: 1}
	remote0 := Handle{Owner: fuzzFrom, Index: 0, Generation: 1}
	f.Add(uint8(0), appendSubscribe(nil, []Handle{self0}))
	f.Add(uint8(1), appendOutcome(nil, remote0, kindPoisoned, "why"))
	f.Add(uint8(2), appendOutcome(nil, self0, kindTriggered, ""))

	f.Fuzz(func(t *testing.T, handler uint8, payload []byte) {
		if hs, err := parseSubscribe(payload); err == nil {
			if again := appendSubscribe(nil, hs); !bytes.Equal(again, payload) {
				t.Fatalf("subscribe re-encodes to %x, was %x", again, payload)
			}
		}
		for _, gone := range []bool{false, true} {
			if h, k, r, err := parseOutcome(payload, gone); err == nil {
				if again := appendOutcome(nil, h, k, r); !bytes.Equal(again, payload) {
					t.Fatalf("outcome re-encodes to %x, was %x", again, payload)
				}
			}
		}

		m, pending := fuzzManager()
		defer m.Close()
		defer runtime.KeepAlive(pending)
		before := m.Stats()
		name := fuzzHandlers[int(handler)%len(fuzzHandlers)]
		err := m.Deliver(context.Background(), fuzzFrom, name, payload)
		switch {
		case err == nil,
			errors.Is(err, ErrMalformed),
			errors.Is(err, ErrAlreadyCompleted),
			errors.Is(err, ErrEventGone):
		default:
			t.Fatalf("Deliver(%s, %x) = %v: not an error Deliver may return", name, payload, err)
		}
		after := m.Stats()
		if errors.Is(err, ErrMalformed) && after.Pending != before.Pending {
			t.Fatalf("a refused message changed state: %+v then %+v", before, after)
		}
		if after.Pending < 0 || after.Subscriptions < 0 || after.Proxies < 0 ||
			after.Pending+after.Retained != after.Slots || after.Proxies > before.Proxies {
			t.Fatalf("inconsistent stats %+v (before %+v)", after, before)
		}
	})
}
