package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// recorder is a transport.Handler that checks the Conn contract: frames
// of one writer arrive whole and in order, and Closed comes exactly once.
type recorder struct {
	mu     sync.Mutex
	next   map[uint32]uint32 // guarded by mu: next sequence number per writer
	count  int               // guarded by mu
	errs   []error           // guarded by mu
	closes atomic.Int32
	reason error         // written once, before done is closed
	done   chan struct{} // closed by the first Closed
	all    chan struct{} // closed when count reaches want
	want   int
	fail   []byte // a frame that makes HandleFrame return an error
}

func newRecorder(want int) *recorder {
	return &recorder{next: make(map[uint32]uint32), done: make(chan struct{}), all: make(chan struct{}), want: want}
}

func (r *recorder) HandleFrame(frame []byte) error {
	if r.fail != nil && bytes.Equal(frame, r.fail) {
		return errors.New("transporttest: the handler refuses this frame")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	writer, seq, err := parseTestFrame(frame)
	if err != nil {
		r.errs = append(r.errs, err)
		return nil
	}
	if want := r.next[writer]; seq != want {
		r.errs = append(r.errs, fmt.Errorf("writer %d: frame %d arrived when %d was due", writer, seq, want))
	}
	r.next[writer] = seq + 1
	r.count++
	if r.count == r.want {
		close(r.all)
	}
	return nil
}

func (r *recorder) Closed(reason error) {
	if r.closes.Add(1) == 1 {
		r.reason = reason
		close(r.done)
	}
}

func (r *recorder) check(t *testing.T, who string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		t.Errorf("%s: %v", who, err)
	}
}

// testFrame is a ping frame whose data says who wrote it and in which
// order, followed by filler so that sizes vary: a request frame would do
// as well, but a ping is valid wherever a frame parser looks.
func testFrame(writer, seq uint32, filler int) []byte {
	b := wire.AppendPing(nil, false, uint64(writer)<<32|uint64(seq))
	if filler > 0 {
		// Grow the frame: append bytes and fix up the length prefix.
		b = append(b, make([]byte, filler)...)
		putLen(b, len(b)-wire.PrefixLen)
	}
	return b
}

func parseTestFrame(frame []byte) (writer, seq uint32, err error) {
	// The ping's 8 data bytes follow the 2-byte header; filler may follow.
	if len(frame) < 10 || frame[0] != wire.Version || wire.Type(frame[1]) != wire.TypePing {
		return 0, 0, fmt.Errorf("frame of %d bytes is not a test frame", len(frame))
	}
	v := binary.BigEndian.Uint64(frame[2:10])
	return uint32(v >> 32), uint32(v), nil
}

// testConnContract drives a transport without a messenger: concurrent
// writers in both directions, per-writer order, Close semantics, and a
// handler error closing the connection.
func testConnContract(t *testing.T, f Factory) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const writers, perWriter = 4, 200

	var srvMu sync.Mutex
	var srvConns []transport.Conn
	var srvRecs []*recorder
	accepted := make(chan struct{}, 16)
	srv, cli := f.New(), f.New()
	defer func() {
		if err := cli.Close(); err != nil {
			t.Errorf("client transport Close: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("server transport Close: %v", err)
		}
		srv.Close() // idempotent
	}()
	addr, err := srv.Listen(ctx, func(c transport.Conn) transport.Handler {
		r := newRecorder(writers * perWriter)
		r.fail = testFrame(999, 0, 0)[wire.PrefixLen:]
		srvMu.Lock()
		srvConns = append(srvConns, c)
		srvRecs = append(srvRecs, r)
		srvMu.Unlock()
		accepted <- struct{}{}
		return r
	})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if _, err := cli.Listen(ctx, func(transport.Conn) transport.Handler { return newRecorder(-1) }); err != nil {
		t.Fatalf("Listen of the dialing transport: %v", err)
	}
	if mf := srv.MaxFrame(); mf <= 64 {
		t.Fatalf("MaxFrame = %d after Listen", mf)
	}
	maxFiller := min(srv.MaxFrame(), cli.MaxFrame()) - 10

	cliRec := newRecorder(writers * perWriter)
	c, err := cli.Dial(ctx, addr, func(transport.Conn) transport.Handler { return cliRec })
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	// The server side exists once a frame went through; write one writer's
	// frames first, then the others concurrently.
	write := func(c transport.Conn, w uint32, errs chan<- error) {
		for i := range uint32(perWriter) {
			filler := int(i%17) * 64
			if i == perWriter/2 {
				filler = maxFiller // one frame of the largest size
			}
			if err := c.WriteFrame(context.Background(), testFrame(w, i, filler)); err != nil {
				errs <- fmt.Errorf("writer %d frame %d: %w", w, i, err)
				return
			}
		}
	}
	errs := make(chan error, 2*writers)
	write(c, 0, errs)
	recv(t, accepted, failFast, "the server side of the connection")
	srvMu.Lock()
	sc, srec := srvConns[0], srvRecs[0]
	srvMu.Unlock()
	var wg sync.WaitGroup
	for w := uint32(1); w < writers; w++ {
		wg.Go(func() { write(c, w, errs) })
	}
	for w := uint32(0); w < writers; w++ {
		wg.Go(func() { write(sc, w, errs) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	recv(t, srec.all, failFast, "every frame at the server")
	recv(t, cliRec.all, failFast, "every frame at the client")
	srec.check(t, "server")
	cliRec.check(t, "client")

	// Close by the dialer: both sides see Closed once; writes then fail.
	c.Close(errors.New("done"))
	c.Close(errors.New("again"))
	recv(t, cliRec.done, failFast, "Closed on the dialing side")
	recv(t, srec.done, failFast, "Closed on the accepting side")
	if err := c.WriteFrame(context.Background(), testFrame(0, 0, 0)); err == nil {
		t.Error("WriteFrame after Close succeeded")
	}

	// A handler error closes the connection, on both sides.
	rec2 := newRecorder(-1)
	c2, err := cli.Dial(ctx, addr, func(transport.Conn) transport.Handler { return rec2 })
	if err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	// WriteFrame may report the close that its own frame caused, when the
	// peer is quick enough: either way the connection must end.
	c2.WriteFrame(context.Background(), testFrame(999, 0, 0))
	recv(t, rec2.done, failFast, "Closed after the peer's handler failed")

	// Closing the transports closes what remains, and Closed ran once on
	// every connection.
	rec3 := newRecorder(-1)
	if _, err := cli.Dial(ctx, addr, func(transport.Conn) transport.Handler { return rec3 }); err != nil {
		t.Fatalf("third Dial: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	recv(t, rec3.done, failFast, "Closed on the dialing side when the listener's transport closed")
	srvMu.Lock()
	defer srvMu.Unlock()
	for i, r := range srvRecs {
		if n := r.closes.Load(); n != 1 {
			t.Errorf("server connection %d: Closed called %d times, want 1", i, n)
		}
	}
	for _, r := range []*recorder{cliRec, rec2, rec3} {
		if n := r.closes.Load(); n != 1 {
			t.Errorf("client connection: Closed called %d times, want 1", n)
		}
	}
	if _, err := srv.Dial(ctx, addr, func(transport.Conn) transport.Handler { return newRecorder(-1) }); err == nil {
		t.Error("Dial on a closed transport succeeded")
	}
}

// rawViaDial opens "raw" connections with a transport of the factory's
// own: Write hands the bytes to Conn.WriteFrame unchecked, and Read
// reports the end of the connection.
func rawViaDial(t *testing.T, f Factory) func(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	tr := f.New()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := tr.Listen(ctx, func(transport.Conn) transport.Handler { return newRecorder(-1) }); err != nil {
		t.Fatalf("Listen of the raw transport: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return func(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
		r := newRecorder(-1)
		c, err := tr.Dial(ctx, addr, func(transport.Conn) transport.Handler { return r })
		if err != nil {
			return nil, err
		}
		return &dialedRaw{c: c, r: r}, nil
	}
}

type dialedRaw struct {
	c transport.Conn
	r *recorder
}

func (d *dialedRaw) Write(p []byte) (int, error) {
	if err := d.c.WriteFrame(context.Background(), p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read blocks until the connection ended; nothing the peer sends is
// passed on.
func (d *dialedRaw) Read([]byte) (int, error) {
	<-d.r.done
	return 0, io.EOF
}

func (d *dialedRaw) Close() error { return d.c.Close(nil) }
