package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/velo-messenger/velo/peer"
)

// Identities of the fuzzed manager and of the peer its messages come from,
// with fixed epochs (a manager draws its own at random) so that the seeds
// name the manager's events.
var (
	fuzzSelf = peer.ID{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}
	fuzzFrom = peer.ID{0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb}
)

const (
	fuzzSelfEpoch  = 0xa1a1a1a1a1a1a1a1
	fuzzFromEpoch  = 0xb1b1b1b1b1b1b1b1
	fuzzOtherEpoch = 0xc1c1c1c1c1c1c1c1 // an earlier incarnation of either
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
	m.epoch = fuzzSelfEpoch // before any event: every handle carries it
	pending, _ := m.NewEvent()
	trig, _ := m.NewEvent()
	pois, _ := m.NewEvent()
	_ = trig.Trigger()
	_ = pois.Poison("fuzz")
	_ = m.onSubscribe(fuzzFrom, []Handle{pending.Handle()})
	_, _ = m.Awaiter(fuzzRemote(0, 1))
	return m, pending
}

func fuzzLocal(index, gen uint32) Handle {
	return Handle{Owner: fuzzSelf, Epoch: fuzzSelfEpoch, Index: index, Generation: gen}
}

func fuzzRemote(index, gen uint32) Handle {
	return Handle{Owner: fuzzFrom, Epoch: fuzzFromEpoch, Index: index, Generation: gen}
}

// fuzzSeed is one entry of FuzzDeliver's seed corpus.
type fuzzSeed struct {
	handler uint8 // index in fuzzHandlers
	payload []byte
}

// fuzzSeeds is FuzzDeliver's seed corpus, by file name under
// testdata/fuzz/FuzzDeliver: each message kind hitting each state of
// fuzzManager, and the ways a message can be malformed.
func fuzzSeeds() map[string]fuzzSeed {
	const sub, trig, comp, bogus = 0, 1, 2, 3
	self0, remote0 := fuzzLocal(0, 1), fuzzRemote(0, 1)
	oldSelf0 := self0
	oldSelf0.Epoch = fuzzOtherEpoch
	oldRemote0 := remote0
	oldRemote0.Epoch = fuzzOtherEpoch
	subscribe := func(hs ...Handle) []byte { return appendSubscribe(nil, hs) }
	outcome := func(h Handle, k kind, reason string) []byte { return appendOutcome(nil, h, k, reason) }
	withVersion := func(b []byte, v byte) []byte { b[0] = v; return b }
	return map[string]fuzzSeed{
		"empty":                 {sub, nil},
		"subscribe-pending":     {sub, subscribe(self0)},
		"subscribe-completed":   {sub, subscribe(fuzzLocal(2, 1))},
		"subscribe-batch":       {sub, subscribe(self0, fuzzLocal(1, 1), fuzzLocal(2, 1), fuzzLocal(0, 7), fuzzLocal(9, 1))},
		"subscribe-foreign":     {sub, subscribe(remote0)},
		"subscribe-other-epoch": {sub, subscribe(oldSelf0)},
		"subscribe-old-version": {sub, withVersion(subscribe(self0), 1)},
		"subscribe-bad-version": {sub, withVersion(subscribe(self0), protoVersion+1)},
		"subscribe-short":       {sub, subscribe(self0)[:subscribeHeaderLen+HandleSize-1]},
		"subscribe-zero-count":  {sub, []byte{protoVersion, 0, 0}},
		"trigger-proxy":         {trig, outcome(remote0, kindTriggered, "")},
		"trigger-poison":        {trig, outcome(remote0, kindPoisoned, "reason with ünïcode")},
		"trigger-gone":          {trig, outcome(remote0, kindGone, "")},
		"trigger-restarted":     {trig, outcome(remote0, kindRestarted, "")},
		"trigger-no-proxy":      {trig, outcome(fuzzRemote(5, 3), kindTriggered, "")},
		"trigger-other-epoch":   {trig, outcome(oldRemote0, kindTriggered, "")},
		"trigger-spoofed":       {trig, outcome(self0, kindTriggered, "")},
		"trigger-bad-kind":      {trig, outcome(remote0, 9, "")},
		"trigger-long-len":      {trig, append(outcome(remote0, kindPoisoned, "abc"), make([]byte, 9)...)},
		"complete-trigger":      {comp, outcome(self0, kindTriggered, "")},
		"complete-poison":       {comp, outcome(self0, kindPoisoned, "stop")},
		"complete-again":        {comp, outcome(fuzzLocal(1, 1), kindPoisoned, "too late")},
		"complete-stale":        {comp, outcome(fuzzLocal(0, 7), kindTriggered, "")},
		"complete-other-epoch":  {comp, outcome(oldSelf0, kindTriggered, "")},
		"complete-foreign":      {comp, outcome(remote0, kindTriggered, "")},
		"complete-gone-kind":    {comp, outcome(self0, kindGone, "")},
		"complete-restart-kind": {comp, outcome(self0, kindRestarted, "")},
		"unknown-handler":       {bogus, subscribe(self0)},
	}
}

// TestFuzzDeliverSeeds writes FuzzDeliver's seed corpus under testdata/fuzz
// when VELO_WRITE_FUZZ_SEEDS=1; otherwise it checks that each seed file is
// there and up to date (a change of layout shows here).
func TestFuzzDeliverSeeds(t *testing.T) {
	write := os.Getenv("VELO_WRITE_FUZZ_SEEDS") == "1"
	dir := filepath.Join("testdata", "fuzz", "FuzzDeliver")
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, seed := range fuzzSeeds() {
		path := filepath.Join(dir, name)
		content := fmt.Sprintf("go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", seed.handler, seed.payload)
		if write {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Errorf("seed %s missing or stale (err %v); VELO_WRITE_FUZZ_SEEDS=1 rewrites it", path, err)
		}
	}
}

// FuzzDeliver feeds arbitrary payloads to Deliver under each handler name.
// Deliver must never panic, must refuse what it cannot decode with
// ErrMalformed, and must leave its bookkeeping consistent. Whatever the
// codecs accept must re-encode to the same bytes.
func FuzzDeliver(f *testing.F) {
	for _, seed := range fuzzSeeds() { // testdata holds them too
		f.Add(seed.handler, seed.payload)
	}

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
			errors.Is(err, ErrEventGone),
			errors.Is(err, ErrOwnerRestarted):
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
