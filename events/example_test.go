package events_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/peer"
)

// A local event: one goroutine completes it, another waits for it.
func Example() {
	m := events.NewManager(peer.NewID(), nil, events.Options{})
	defer m.Close()

	ev, _ := m.NewEvent()
	aw, _ := m.Awaiter(ev.Handle())

	go ev.Poison("disk full")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := aw.Wait(ctx)
	reason, poisoned := events.PoisonReason(err)
	fmt.Println(poisoned, reason)
	// Output: true disk full
}

// loopback is the smallest Network: it hands each message to the
// destination manager's Deliver. The messenger does the same over a
// transport, with AMSend on one side and a handler on the other.
type loopback struct {
	self  peer.ID
	nodes map[peer.ID]*events.Manager // filled before the first Send
	wg    *sync.WaitGroup
}

func (l loopback) Send(ctx context.Context, to peer.ID, handler string, payload []byte) error {
	dst := l.nodes[to]
	l.wg.Add(1)
	go func() { // a transport's receive path runs elsewhere
		defer l.wg.Done()
		_ = dst.Deliver(context.Background(), l.self, handler, payload)
	}()
	return nil
}

// A remote event: instance b awaits an event that instance a owns, knowing
// only its handle.
func Example_remote() {
	var wg sync.WaitGroup
	nodes := map[peer.ID]*events.Manager{}
	idA, idB := peer.NewID(), peer.NewID()
	a := events.NewManager(idA, loopback{idA, nodes, &wg}, events.Options{})
	b := events.NewManager(idB, loopback{idB, nodes, &wg}, events.Options{})
	nodes[idA], nodes[idB] = a, b
	defer func() { a.Close(); b.Close(); wg.Wait() }()

	ev, _ := a.NewEvent()
	text, _ := ev.Handle().MarshalText() // travels in any payload
	var h events.Handle
	_ = h.UnmarshalText(text)

	aw, _ := b.Awaiter(h) // b subscribes to a
	_ = ev.Trigger()      // a tells b

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println(aw.Wait(ctx))
	// Output: <nil>
}
