package mem_test

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
)

// arrival is a frame received: its sequence number and when it came.
type arrival struct {
	seq uint64
	at  time.Time
}

// recorder is a Handler that reports each frame on a channel.
type recorder struct{ got chan arrival }

func (r *recorder) HandleFrame(f []byte) error {
	r.got <- arrival{binary.BigEndian.Uint64(f[2:]), time.Now()}
	return nil
}

func (r *recorder) Closed(error) {}

// link is a connection dialed from endpoint "a" to endpoint "b" on n, with
// what each end receives.
type link struct {
	ab, ba     transport.Conn // a's end (writes go to b) and b's
	atA, atB   *recorder      // what a receives, what b receives
	transports [2]*mem.Transport
}

func newLink(t *testing.T, n *mem.Network) *link {
	t.Helper()
	l := &link{atA: &recorder{make(chan arrival, 4096)}, atB: &recorder{make(chan arrival, 4096)}}
	ta := mem.New(n, mem.Options{Addr: "a"})
	tb := mem.New(n, mem.Options{Addr: "b"})
	l.transports = [2]*mem.Transport{ta, tb}
	t.Cleanup(func() { ta.Close(); tb.Close() })
	accepted := make(chan transport.Conn, 1)
	ctx := context.Background()
	if _, err := ta.Listen(ctx, func(transport.Conn) transport.Handler { return l.atA }); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Listen(ctx, func(c transport.Conn) transport.Handler { accepted <- c; return l.atB }); err != nil {
		t.Fatal(err)
	}
	c, err := ta.Dial(ctx, "b", func(transport.Conn) transport.Handler { return l.atA })
	if err != nil {
		t.Fatal(err)
	}
	l.ab, l.ba = c, <-accepted
	return l
}

// frame is a ping frame carrying seq.
func frame(seq uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, 2+8)
	b = append(b, wire.Version, byte(wire.TypePing))
	return binary.BigEndian.AppendUint64(b, seq)
}

// send writes frames 0..n-1 on c.
func send(t *testing.T, c transport.Conn, n int) {
	t.Helper()
	for i := range n {
		if err := c.WriteFrame(context.Background(), frame(uint64(i))); err != nil {
			t.Fatalf("WriteFrame %d: %v", i, err)
		}
	}
}

// collect returns what r receives until quiet passes without a frame.
func collect(r *recorder, quiet time.Duration) []arrival {
	var got []arrival
	for {
		select {
		case a := <-r.got:
			got = append(got, a)
		case <-time.After(quiet):
			return got
		}
	}
}

func seqs(as []arrival) []uint64 {
	s := make([]uint64, len(as))
	for i, a := range as {
		s[i] = a.seq
	}
	return s
}

func TestDropAll(t *testing.T) {
	n := mem.NewNetwork()
	l := newLink(t, n)
	n.Drop("a", "b", 1)
	send(t, l.ab, 10)
	send(t, l.ba, 10)
	if got := collect(l.atB, 100*time.Millisecond); len(got) != 0 {
		t.Errorf("b received %v with every frame from a dropped", seqs(got))
	}
	if got := collect(l.atA, 100*time.Millisecond); len(got) != 10 {
		t.Errorf("a received %d frames from b, want all 10: the fault is one way", len(got))
	}
	n.Drop("a", "b", 0) // removes the fault
	send(t, l.ab, 3)
	if got := seqs(collect(l.atB, 100*time.Millisecond)); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Errorf("after Drop(a, b, 0) b received %v, want [0 1 2]", got)
	}
}

// dropRun sends 400 frames through a network seeded with seed that drops
// half of them, and returns those that arrived.
func dropRun(t *testing.T, seed uint64) []uint64 {
	n := mem.NewNetwork()
	n.Seed(seed)
	l := newLink(t, n)
	n.Drop("a", "b", 0.5)
	send(t, l.ab, 400)
	return seqs(collect(l.atB, 100*time.Millisecond))
}

func TestDropRateSeeded(t *testing.T) {
	first := dropRun(t, 7)
	if len(first) < 140 || len(first) > 260 {
		t.Errorf("%d of 400 frames arrived with half dropped", len(first))
	}
	if !slices.IsSorted(first) {
		t.Errorf("frames reordered: %v", first)
	}
	if again := dropRun(t, 7); !slices.Equal(first, again) {
		t.Errorf("the same seed dropped other frames:\n%v\n%v", first, again)
	}
	if other := dropRun(t, 8); slices.Equal(first, other) {
		t.Errorf("seeds 7 and 8 dropped the same frames")
	}
}

func TestDelayIsLatency(t *testing.T) {
	n := mem.NewNetwork()
	l := newLink(t, n)
	const d = 100 * time.Millisecond
	n.Delay("a", "b", d, 1)
	start := time.Now()
	send(t, l.ab, 50)
	got := collect(l.atB, 300*time.Millisecond)
	if s := seqs(got); len(s) != 50 || !slices.IsSorted(s) {
		t.Fatalf("received %v, want 0..49 in order", s)
	}
	if early := got[0].at.Sub(start); early < d {
		t.Errorf("the first frame arrived after %v, before its delay of %v", early, d)
	}
	// Held frames do not wait for each other: 50 frames delayed by d
	// arrive within about d, not 50 d.
	if last := got[49].at.Sub(start); last > 3*d {
		t.Errorf("the last of 50 frames delayed by %v arrived after %v", d, last)
	}
}

func TestDelayKeepsOrder(t *testing.T) {
	n := mem.NewNetwork()
	n.Seed(3)
	l := newLink(t, n)
	n.DelayUpTo("a", "b", 20*time.Millisecond, 0.3)
	for i := range 300 {
		send1(t, l.ab, uint64(i))
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if s := seqs(collect(l.atB, 200*time.Millisecond)); len(s) != 300 || !slices.IsSorted(s) {
		t.Errorf("received %d frames, in order: %v; want all 300 in order", len(s), slices.IsSorted(s))
	}
}

// TestDelayHoldsUpTheFramesBehind: a frame that is not delayed itself
// waits for the delayed one ahead of it.
func TestDelayHoldsUpTheFramesBehind(t *testing.T) {
	n := mem.NewNetwork()
	l := newLink(t, n)
	const d = 100 * time.Millisecond
	n.Delay("a", "b", d, 1)
	start := time.Now()
	send1(t, l.ab, 0)
	n.Delay("a", "b", 0, 0) // frames from now on are not delayed
	send1(t, l.ab, 1)
	got := collect(l.atB, 300*time.Millisecond)
	if len(got) != 2 || got[0].seq != 0 || got[1].seq != 1 {
		t.Fatalf("received %v, want [0 1]", seqs(got))
	}
	if behind := got[1].at.Sub(start); behind < d {
		t.Errorf("the frame behind a delayed one arrived after %v, before it (%v)", behind, d)
	}
	// Once the held frame is out, frames go straight through again.
	start = time.Now()
	send1(t, l.ab, 2)
	if a := <-l.atB.got; a.seq != 2 || a.at.Sub(start) > d/2 {
		t.Errorf("frame %d took %v with no fault left", a.seq, a.at.Sub(start))
	}
}

func send1(t *testing.T, c transport.Conn, seq uint64) {
	t.Helper()
	if err := c.WriteFrame(context.Background(), frame(seq)); err != nil {
		t.Fatalf("WriteFrame %d: %v", seq, err)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	n := mem.NewNetwork()
	l := newLink(t, n)
	n.Partition("a", "b")
	send(t, l.ab, 5)
	send(t, l.ba, 5)
	if got := collect(l.atB, 50*time.Millisecond); len(got) != 0 {
		t.Errorf("b received %v across a partition", seqs(got))
	}
	if got := collect(l.atA, 50*time.Millisecond); len(got) != 0 {
		t.Errorf("a received %v across a partition", seqs(got))
	}

	// A dial across it waits: until its ctx ends...
	ta := l.transports[0]
	bind := func(transport.Conn) transport.Handler { return &recorder{make(chan arrival, 16)} }
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if c, err := ta.Dial(ctx, "b", bind); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial across a partition: %v, %v; want context.DeadlineExceeded", c, err)
	}
	// ... or until the partition heals.
	dialed := make(chan error, 1)
	go func() {
		_, err := ta.Dial(context.Background(), "b", bind)
		dialed <- err
	}()
	select {
	case err := <-dialed:
		t.Fatalf("Dial across a partition returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	n.Heal()
	select {
	case err := <-dialed:
		if err != nil {
			t.Errorf("Dial once healed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dial still waiting after Heal")
	}

	// The old connection carries frames again; those lost stay lost.
	send(t, l.ab, 2)
	if got := seqs(collect(l.atB, 100*time.Millisecond)); !slices.Equal(got, []uint64{0, 1}) {
		t.Errorf("after Heal b received %v, want [0 1]", got)
	}
}

func TestPartitionLosesHeldFrames(t *testing.T) {
	n := mem.NewNetwork()
	l := newLink(t, n)
	n.Delay("a", "b", 100*time.Millisecond, 1)
	send(t, l.ab, 3)
	n.Partition("a", "b") // before the held frames are due
	time.Sleep(150 * time.Millisecond)
	n.Heal()
	send(t, l.ab, 1)
	if got := seqs(collect(l.atB, 100*time.Millisecond)); !slices.Equal(got, []uint64{0}) {
		t.Errorf("b received %v, want [0]: the frames held when the partition began are lost", got)
	}
}

// TestCloseWithHeldFrames: a transport closed while frames are held
// returns, and its goroutines with it (TestMain checks for leaks).
func TestCloseWithHeldFrames(t *testing.T) {
	n := mem.NewNetwork()
	l := newLink(t, n)
	n.Delay("a", "b", time.Hour, 1)
	send(t, l.ab, 10)
	done := make(chan struct{})
	go func() {
		l.transports[0].Close()
		l.transports[1].Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for frames held for an hour")
	}
	if err := l.ab.WriteFrame(context.Background(), frame(99)); err == nil {
		t.Error("WriteFrame on a closed connection succeeded")
	}
}

func TestAddr(t *testing.T) {
	n := mem.NewNetwork()
	bind := func(transport.Conn) transport.Handler { return &recorder{make(chan arrival, 1)} }
	a := mem.New(n, mem.Options{Addr: "a"})
	defer a.Close()
	if got, err := a.Listen(context.Background(), bind); got != "a" || err != nil || a.Addr() != "a" {
		t.Errorf("Listen with Addr a: %q, %v; Addr() %q", got, err, a.Addr())
	}
	dup := mem.New(n, mem.Options{Addr: "a"})
	defer dup.Close()
	if _, err := dup.Listen(context.Background(), bind); err == nil {
		t.Error("a second Listen on address a succeeded")
	}
	anon := mem.New(n)
	defer anon.Close()
	if got, err := anon.Listen(context.Background(), bind); err != nil || got == "" || got == "a" {
		t.Errorf("Listen without Addr: %q, %v", got, err)
	}
	c, err := anon.Dial(context.Background(), "a", bind)
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalAddr() != anon.Addr() || c.RemoteAddr() != "a" {
		t.Errorf("conn addresses %q → %q, want %q → a", c.LocalAddr(), c.RemoteAddr(), anon.Addr())
	}
}

func TestBadFaultsPanic(t *testing.T) {
	n := mem.NewNetwork()
	for name, f := range map[string]func(){
		"drop rate 2":        func() { n.Drop("a", "b", 2) },
		"drop rate -0.1":     func() { n.Drop("a", "b", -0.1) },
		"delay rate 1.5":     func() { n.Delay("a", "b", time.Second, 1.5) },
		"negative delay":     func() { n.Delay("a", "b", -time.Second, 1) },
		"negative delay max": func() { n.DelayUpTo("a", "b", -time.Second, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
