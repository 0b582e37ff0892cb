package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// tally counts the one-way messages a server received, and lets the
// barrier that ends a stream wait until it has seen a given number.
//
// add may run on any number of goroutines; wait runs on one at a time.
// The race between them: add compares the new count with want after
// incrementing, wait stores want and then reads the count. Whichever
// order they run in, either add sees want and signals, or wait sees the
// count; reached has room for one signal, so add never blocks.
type tally struct {
	n       atomic.Int64
	want    atomic.Int64 // 0: nobody waits
	reached chan struct{}
}

func newTally() *tally { return &tally{reached: make(chan struct{}, 1)} }

func (t *tally) add() {
	if n := t.n.Add(1); n == t.want.Load() {
		select {
		case t.reached <- struct{}{}:
		default:
		}
	}
}

// wait returns once n messages were counted, and takes them off the
// count, so that the next stream starts from zero.
func (t *tally) wait(ctx context.Context, n int64) error {
	if n <= 0 {
		return fmt.Errorf("barrier for %d messages", n)
	}
	t.want.Store(n)
	defer t.want.Store(0)
	for t.n.Load() < n {
		select {
		case <-t.reached:
		case <-ctx.Done():
			return fmt.Errorf("counted %d of %d messages: %w", t.n.Load(), n, ctx.Err())
		}
	}
	t.n.Add(-n)
	select {
	case <-t.reached: // a signal left over from a count that passed n
	default:
	}
	return nil
}

// The barrier's request and answer carry a count as 8 bytes, big-endian.
func appendCount(b []byte, n int) []byte { return binary.BigEndian.AppendUint64(b, uint64(n)) }

func parseCount(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("count of %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}
