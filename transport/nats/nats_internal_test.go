package nats

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// handler records what a connection receives. HandleFrame waits while
// hold is set, so that a test can stop a receiver from reading.
type handler struct {
	frames chan []byte
	closed chan error
	hold   chan struct{} // nil: never wait
}

func newHandler() *handler {
	return &handler{frames: make(chan []byte, 1024), closed: make(chan error, 1)}
}

func (h *handler) HandleFrame(f []byte) error {
	if h.hold != nil {
		<-h.hold
	}
	h.frames <- f
	return nil
}

func (h *handler) Closed(err error) { h.closed <- err }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// listen starts a transport on ns whose accepted connections get handlers
// from the returned channel's sender side.
func listen(t *testing.T, ns *TestServer, opts Options) (*Transport, string, <-chan *handler) {
	t.Helper()
	opts.URL = ns.URL()
	opts.NATSOptions = append(opts.NATSOptions, nats.ReconnectWait(20*time.Millisecond))
	tr := New(opts)
	accepted := make(chan *handler, 16)
	addr, err := tr.Listen(testCtx(t), func(transport.Conn) transport.Handler {
		h := newHandler()
		accepted <- h
		return h
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, addr, accepted
}

func recvWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

func ping(n uint64) []byte { return wire.AppendPing(nil, false, n) }

func TestMaxFrameFollowsServer(t *testing.T) {
	ns := StartTestServer(t, 64<<10)
	tr := New(Options{URL: ns.URL()})
	if got := tr.MaxFrame(); got != wire.DefaultMaxFrame {
		t.Errorf("MaxFrame before Listen = %d, want the configured %d", got, wire.DefaultMaxFrame)
	}
	if _, err := tr.Listen(testCtx(t), func(transport.Conn) transport.Handler { return newHandler() }); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got, want := tr.MaxFrame(), 64<<10-dataHeaderLen; got != want {
		t.Errorf("MaxFrame on a 64 KiB server = %d, want %d", got, want)
	}
	small := New(Options{URL: ns.URL(), MaxFrame: 1000})
	if _, err := small.Listen(testCtx(t), func(transport.Conn) transport.Handler { return newHandler() }); err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if got := small.MaxFrame(); got != 1000 {
		t.Errorf("MaxFrame configured below the server's = %d, want 1000", got)
	}
}

func TestDialNobodyFailsFast(t *testing.T) {
	ns := StartTestServer(t, 0)
	tr, _, _ := listen(t, ns, Options{})
	start := time.Now()
	_, err := tr.Dial(testCtx(t), "velo.in.nobody", newHandler().bind)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("Dial of a subject nobody listens on: %v, want ErrNoResponders", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func (h *handler) bind(transport.Conn) transport.Handler { return h }

// Garbage published to a transport's subject is dropped; the
// connections it has go on.
func TestGarbageIsDropped(t *testing.T) {
	ns := StartTestServer(t, 0)
	srv, addr, accepted := listen(t, ns, Options{})
	cli, _, _ := listen(t, ns, Options{})
	h := newHandler()
	c, err := cli.Dial(testCtx(t), addr, h.bind)
	if err != nil {
		t.Fatal(err)
	}
	sh := recvWithin(t, accepted, "the accepted connection")

	raw, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, m := range [][]byte{
		{},
		{99, 1, 2, 3},
		{kindData, 1},
		append(appendDataHeader(nil, 12345, 0), ping(1)[wire.PrefixLen:]...), // no such connection
		appendWindow(nil, 12345, 100),
		appendClose(nil, 12345, "who?"),
		appendOpen(nil, 1, 1, "x"), // no reply subject: nobody to answer
	} {
		if err := raw.Publish(addr, m); err != nil {
			t.Fatal(err)
		}
	}
	// An open in another version is refused, with a reason.
	bad := appendOpen(nil, 1, 1<<20, "velo.in.raw")
	bad[1] = 2
	reply, err := raw.Request(addr, bad, 5*time.Second)
	if err != nil || len(reply.Data) == 0 || reply.Data[0] != kindRefuse {
		t.Errorf("open of another version: %v, %v; want a refusal", reply, err)
	}
	raw.Flush()

	if err := c.WriteFrame(context.Background(), ping(7)); err != nil {
		t.Fatal(err)
	}
	if f := recvWithin(t, sh.frames, "the frame after the garbage"); len(f) != len(ping(7))-wire.PrefixLen {
		t.Errorf("frame of %d bytes", len(f))
	}
	_ = srv
}

// rawPeer speaks the transport's messages by hand through its own NATS
// connection, to send what a correct peer never would.
type rawPeer struct {
	nc      *nats.Conn
	subject string
	inbox   chan *nats.Msg
	id      uint64 // the listener's id for the connection
}

func openRaw(t *testing.T, ns *TestServer, addr string, window uint32) *rawPeer {
	t.Helper()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p := &rawPeer{nc: nc, subject: "velo.in.raw." + nats.NewInbox()[7:], inbox: make(chan *nats.Msg, 64)}
	if _, err := nc.ChanSubscribe(p.subject, p.inbox); err != nil {
		t.Fatal(err)
	}
	reply, err := nc.Request(addr, appendOpen(nil, 1, window, p.subject), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p.id, _, err = parseAccept(reply.Data)
	if err != nil {
		t.Fatalf("open: %v (%q)", err, reply.Data)
	}
	return p
}

func (p *rawPeer) send(t *testing.T, addr string, seq uint64, frame []byte) {
	t.Helper()
	if err := p.nc.Publish(addr, append(appendDataHeader(nil, p.id, seq), frame...)); err != nil {
		t.Fatal(err)
	}
}

// waitClose waits for the listener's close message.
func (p *rawPeer) waitClose(t *testing.T) string {
	t.Helper()
	for {
		m := recvWithin(t, p.inbox, "a close message")
		if len(m.Data) > 0 && m.Data[0] == kindClose {
			_, reason, _ := parseClose(m.Data)
			return reason
		}
	}
}

func TestSequenceGapClosesTheConnection(t *testing.T) {
	ns := StartTestServer(t, 0)
	_, addr, accepted := listen(t, ns, Options{})
	p := openRaw(t, ns, addr, 1<<20)
	h := recvWithin(t, accepted, "the accepted connection")
	frame := ping(1)[wire.PrefixLen:]
	p.send(t, addr, 0, frame)
	recvWithin(t, h.frames, "the first frame")
	p.send(t, addr, 2, frame) // 1 went missing
	if err := recvWithin(t, h.closed, "Closed"); err == nil {
		t.Error("Closed(nil)")
	}
	t.Logf("peer told: %s", p.waitClose(t))
}

func TestPeerBeyondItsWindowIsClosed(t *testing.T) {
	ns := StartTestServer(t, 0)
	tr := New(Options{URL: ns.URL(), Window: 64 << 10, MaxFrame: 16 << 10})
	h := newHandler()
	h.hold = make(chan struct{}) // the handler takes nothing
	addr, err := tr.Listen(testCtx(t), h.bind)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var once sync.Once
	release := func() { once.Do(func() { close(h.hold) }) }
	defer release() // before Close, which waits for the handler
	p := openRaw(t, ns, addr, 1<<20)
	// The window plus one frame may be in flight; 64 KiB + 16 KiB. Send
	// twice that, ignoring the window the listener granted.
	frame := make([]byte, 16<<10)
	frame[0], frame[1] = wire.Version, byte(wire.TypePing)
	for seq := range uint64(10) {
		p.send(t, addr, seq, frame)
	}
	if reason := p.waitClose(t); reason == "" {
		t.Error("the peer was told nothing")
	}
	// Closed follows once the handler returns from the frame it holds.
	release()
	if err := recvWithin(t, h.closed, "Closed of the flooding connection"); err == nil {
		t.Error("Closed(nil)")
	}
}

// A receiver that does not handle frames stops its sender once the
// window is used up; handling them lets it go on.
func TestBackpressure(t *testing.T) {
	ns := StartTestServer(t, 0)
	const window = 64 << 10
	srv := New(Options{URL: ns.URL(), Window: window, MaxFrame: 8 << 10})
	hold := make(chan struct{})
	sh := newHandler()
	sh.hold = hold
	addr, err := srv.Listen(testCtx(t), sh.bind)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, _, _ := listen(t, ns, Options{MaxFrame: 8 << 10})
	c, err := cli.Dial(testCtx(t), addr, newHandler().bind)
	if err != nil {
		t.Fatal(err)
	}
	frame := append(wire.AppendPing(nil, false, 0), make([]byte, 4<<10)...)
	n := len(frame) - wire.PrefixLen
	frame[0], frame[1], frame[2], frame[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	wrote := make(chan int, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		count := 0
		for range 2 * window / n {
			if err := c.WriteFrame(context.Background(), frame); err != nil {
				break
			}
			count++
		}
		wrote <- count
	})
	select {
	case k := <-wrote:
		t.Fatalf("wrote %d frames (%d bytes) to a receiver that handles none, window %d", k, k*n, window)
	case <-time.After(300 * time.Millisecond):
	}
	close(hold)
	if k := recvWithin(t, wrote, "the end of the writes"); k != 2*window/n {
		t.Errorf("wrote %d frames after the receiver went on, want %d", k, 2*window/n)
	}
	wg.Wait()
}

// A NATS disconnect closes every virtual connection at once, on both
// sides.
func TestDisconnectClosesConnections(t *testing.T) {
	ns := StartTestServer(t, 0)
	_, addr, accepted := listen(t, ns, Options{})
	cli, _, _ := listen(t, ns, Options{})
	h := newHandler()
	if _, err := cli.Dial(testCtx(t), addr, h.bind); err != nil {
		t.Fatal(err)
	}
	sh := recvWithin(t, accepted, "the accepted connection")
	ns.Stop()
	if err := recvWithin(t, h.closed, "Closed on the dialing side"); err == nil {
		t.Error("Closed(nil)")
	}
	recvWithin(t, sh.closed, "Closed on the accepting side")
}
