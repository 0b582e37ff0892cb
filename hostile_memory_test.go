package velo_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Memory under hostile peers: small inputs must not make the server hold
// large memory. The server runs in a child process (startChild), so that
// its heap and resident set are its own; the memory handlers below report
// them.
//
// The bounds these tests hold, with the default options:
//
//   - A connection that announces a frame and trickles its bytes holds
//     at most its read buffer (64 KiB), the frame's first buffer
//     (64 KiB) and the bytes it sent, doubled: 48 such connections, each
//     announcing 16 MiB, grow the live heap by less than 10 MiB
//     (TestHostileMemoryTrickledFrames; it was 771 MiB).
//   - A hello over its limits (4096 handler names, 128 KiB of them) is
//     refused, and decoding one is bounded before the limits are checked:
//     four 8 MiB hellos of 8 M empty names leave the heap within 8 MiB of
//     its baseline, and its peak resident set grows by less than 6 times
//     the bytes sent (10 under the race detector), what reading the
//     frames takes (TestHostileMemoryHugeHello; they were accepted, and
//     kept 569 MiB while their connections lived).
//   - A typed payload whose decoded value would hold more than
//     mpcheck.Growth (12) bytes per byte plus 64 KiB is refused with
//     ErrBadPayload before it is decoded: three 8 MiB payloads of 8 M
//     empty strings at once raise the peak resident set by less than 6
//     times the bytes sent, 10 under the race detector
//     (TestHostileMemoryTypedPayload; each took 421-485 MiB).

// memChildStats is what the child's "memstats" handler answers.
type memChildStats struct {
	HeapAlloc uint64 // live heap after runtime.GC
	HeapInuse uint64
	VmRSS     uint64 // bytes, from /proc/self/status
	VmHWM     uint64 // peak of VmRSS, since the start or the last reset
	Reset     bool   // VmHWM was reset to VmRSS after this reading
}

// memoryHandlers are the child's handlers for the memory tests:
//
//   - "memstats" answers memChildStats as JSON, after runtime.GC; with
//     the payload "reset" it then resets the peak resident set (writing 5
//     to /proc/self/clear_refs), so that the next reading's VmHWM is the
//     peak since this one;
//   - "tags" is a TypedUnaryHandler whose input is {"Tags": []string}.
func memoryHandlers() []*velo.HandlerBuilder {
	type tags struct{ Tags []string }
	return []*velo.HandlerBuilder{
		velo.UnaryHandler("memstats", func(_ context.Context, c *velo.Context) ([]byte, error) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st := memChildStats{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse}
			st.VmRSS, st.VmHWM = procStatus("VmRSS"), procStatus("VmHWM")
			if string(c.Payload) == "reset" {
				st.Reset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
			}
			return json.Marshal(st)
		}),
		velo.TypedUnaryHandler("tags", func(_ context.Context, c *velo.TypedContext[tags]) (int, error) {
			return len(c.Input.Tags), nil
		}),
	}
}

// procStatus reads a "kB" field of /proc/self/status, in bytes; 0 if
// there is none.
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// memChild starts a child server and a messenger that knows it.
func memChild(t *testing.T) (*testchild.Child, *velo.Messenger) {
	t.Helper()
	c := startChild(t)
	m := newMessenger(t, velo.Options{})
	if err := m.RegisterPeer(c.Info); err != nil {
		t.Fatal(err)
	}
	return c, m
}

// memStats asks the child for its memory; reset also restarts its peak.
func memStats(t *testing.T, m *velo.Messenger, c *testchild.Child, reset bool) memChildStats {
	t.Helper()
	var p []byte
	if reset {
		p = []byte("reset")
	}
	b, err := m.Unary("memstats").RawPayload(p).Instance(c.Info.ID).Send(testCtx(t))
	if err != nil {
		t.Fatalf("memstats: %v", err)
	}
	var st memChildStats
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("memstats %q: %v", b, err)
	}
	return st
}

func (st memChildStats) String() string {
	return fmt.Sprintf("heap %s (in use %s), RSS %s, peak RSS %s",
		mib(st.HeapAlloc), mib(st.HeapInuse), mib(st.VmRSS), mib(st.VmHWM))
}

// peakFactor bounds the growth of a server's peak resident set by the
// bytes sent to it: reading a frame takes about twice its size (its
// buffer doubles as its bytes arrive) and the collector runs behind, so
// 6 times; 10 under the race detector, whose shadow memory counts too.
func peakFactor() int {
	if raceEnabled {
		return 10
	}
	return 6
}

func peakBound(sent int) uint64 { return uint64(peakFactor() * sent) }

// growth is after minus before, or 0.
func growth(after, before uint64) uint64 {
	if after < before {
		return 0
	}
	return after - before
}

// TestHostileMemoryTrickledFrames: 48 raw connections, with no hello,
// each announce a frame of 16 MiB - 1 and then send a byte every 100 ms.
// The server's buffer for a frame grows as its bytes arrive, so its live
// heap grows by less than 10 MiB (48 × (64 KiB read buffer + 64 KiB first
// buffer + a session), about 6.5 MiB), not by 48 × 16 MiB. A server that
// refuses such a frame before the handshake closes the connections
// instead, which holds the bound too.
func TestHostileMemoryTrickledFrames(t *testing.T) {
	const (
		conns = 48
		bound = 10 << 20
	)
	c, m := memChild(t)
	before := memStats(t, m, c, true)
	t.Logf("before: %v", before)

	addr := c.Info.Addresses[tcp.Name]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	closed := make(chan int, conns) // bytes written before the server closed the connection
	for range conns {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, wire.DefaultMaxFrame-1)); err != nil {
				closed <- 0
				return
			}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for sent := 1; ; sent++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				// version, type, then the body of a request
				b := byte(wire.Version)
				if sent == 2 {
					b = byte(wire.TypeRequest)
				}
				if _, err := nc.Write([]byte{b}); err != nil {
					closed <- sent
					return
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	during := memStats(t, m, c, false)
	close(stop)
	wg.Wait()
	close(closed)
	n := 0
	for range closed {
		n++
	}
	t.Logf("after 2 s of %d connections trickling 16 MiB frames (%d closed by the server): %v", conns, n, during)
	heap := growth(during.HeapAlloc, before.HeapAlloc)
	t.Logf("live heap growth %s (bound %s), peak RSS growth %s", mib(heap), mib(bound),
		mib(growth(during.VmHWM, before.VmRSS)))
	if heap > bound {
		t.Errorf("live heap grew by %s with %d connections that sent 20 bytes each; want less than %s",
			mib(heap), conns, mib(bound))
	}
}

// hugeHello is a _hello request whose payload lists n empty handler names,
// one byte each: an 8 MiB hello of 8 M names, as large as a frame allows.
func hugeHello(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	info := peer.Info{ID: peer.NewID(), Addresses: map[string]string{tcp.Name: "127.0.0.1:1"}}
	for _, err := range []error{enc.EncodeMapLen(4),
		enc.EncodeString("info"), enc.Encode(info),
		enc.EncodeString("max_frame"), enc.EncodeInt(wire.DefaultMaxFrame),
		enc.EncodeString("protocol"), enc.EncodeInt(wire.Version),
		enc.EncodeString("handlers"), enc.EncodeArrayLen(n)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	buf.Write(bytes.Repeat([]byte{0xa0}, n))
	return wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: system.Hello, Payload: buf.Bytes()})
}

// TestHostileMemoryHugeHello: four raw connections each send a hello of
// 8 M empty handler names (8 MiB). Each is refused (the limit is 4096
// names) before it is decoded, the server's heap returns within 8 MiB of
// its baseline, and its peak resident set grows by less than peakFactor
// times the 32 MiB sent: reading the four frames (each frame's buffer
// doubles as its bytes arrive, about twice the frame in all, and the
// collector runs behind), not decoding 8 M strings each (a []string of
// 128 MiB).
func TestHostileMemoryHugeHello(t *testing.T) {
	const (
		conns = 4
		names = 8 << 20
		bound = 8 << 20
	)
	hello := hugeHello(t, names)
	peak := peakBound(conns * len(hello))
	c, m := memChild(t)
	before := memStats(t, m, c, true)
	t.Logf("before: %v", before)

	addr := c.Info.Addresses[tcp.Name]
	type outcome struct {
		status wire.Status
		err    error // the connection closed: refused
	}
	out := make(chan outcome, conns)
	ncs := make([]net.Conn, conns)
	start := time.Now()
	for i := range ncs {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		ncs[i] = nc
		go func() {
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			go nc.Write(hello) // may fail once the server closes the connection
			f, err := readRawFrame(bufio.NewReader(nc))
			if err != nil {
				out <- outcome{err: err}
				return
			}
			_, body, err := wire.ParseHeader(f)
			if err != nil {
				out <- outcome{err: err}
				return
			}
			r, err := wire.ParseResponse(body)
			out <- outcome{status: r.Status, err: err}
		}()
	}
	for range conns {
		o := <-out
		if o.err == nil && o.status == wire.StatusOK {
			t.Errorf("a hello of %d handler names was accepted", names)
		} else {
			t.Logf("hello of %d handler names refused: status %d, %v", names, o.status, o.err)
		}
	}
	t.Logf("four %s hellos answered in %v", mib(uint64(len(hello))), time.Since(start).Round(time.Millisecond))
	checkGrowth(t, m, c, before, bound, peak, fmt.Sprintf("%d refused hellos", conns))
}

// checkGrowth measures the child's memory again and fails the test if its
// live heap grew by more than bound, or its peak resident set by more
// than peak, since before; what names the attack for the messages.
func checkGrowth(t *testing.T, m *velo.Messenger, c *testchild.Child, before memChildStats, bound, peak uint64, what string) {
	t.Helper()
	after := memStats(t, m, c, false)
	t.Logf("after: %v", after)
	heap, hwm := growth(after.HeapAlloc, before.HeapAlloc), growth(after.VmHWM, before.VmRSS)
	t.Logf("live heap growth %s (bound %s), peak RSS growth %s (bound %s; peak since reset: %v)",
		mib(heap), mib(bound), mib(hwm), mib(peak), before.Reset)
	if heap > bound {
		t.Errorf("live heap grew by %s after %s, want less than %s", mib(heap), what, mib(bound))
	}
	if before.Reset && hwm > peak {
		t.Errorf("peak RSS grew by %s after %s, want less than %s (%d × the bytes sent)", mib(hwm), what, mib(peak), peakFactor())
	}
}

// TestHostileMemoryTypedPayload: three 8 MiB payloads {"Tags": [8 M × ""]}
// at once to a TypedUnaryHandler whose input has Tags []string. Decoded,
// each would hold a []string of 128 MiB, 16 bytes per payload byte: over
// the bound (12 bytes per byte), so each is refused with ErrBadPayload
// before it is decoded, and the server's peak resident set grows by less
// than peakFactor times the 24 MiB sent (the three frames, read as they
// arrive), its live heap by less than 8 MiB once they are answered.
func TestHostileMemoryTypedPayload(t *testing.T) {
	const (
		calls = 3
		tags  = 8 << 20
		bound = 8 << 20
	)
	payload := append([]byte{0x81, 0xa4, 'T', 'a', 'g', 's', 0xdd, tags >> 24, tags >> 16 & 0xff, tags >> 8 & 0xff, tags & 0xff},
		bytes.Repeat([]byte{0xa0}, tags)...)
	peak := peakBound(calls * len(payload))
	c, m := memChild(t)
	before := memStats(t, m, c, true)
	t.Logf("before: %v", before)

	errs := make(chan error, calls)
	start := time.Now()
	for range calls {
		go func() {
			_, err := velo.TypedUnary[int](m, "tags").RawPayload(payload).Instance(c.Info.ID).Send(testCtx(t))
			errs <- err
		}()
	}
	for range calls {
		err := <-errs
		var ve *velo.Error
		if !errors.Is(err, velo.ErrBadPayload) || !errors.As(err, &ve) || !ve.Remote {
			t.Errorf("a %s typed payload of %d empty strings: %v, want ErrBadPayload from the handler", mib(uint64(len(payload))), tags, err)
		} else {
			t.Logf("refused: %v", err)
		}
	}
	t.Logf("%d calls answered in %v", calls, time.Since(start).Round(time.Millisecond))
	checkGrowth(t, m, c, before, bound, peak, fmt.Sprintf("%d refused payloads of %s", calls, mib(uint64(len(payload)))))
}

// TestHostileMemoryHandlerLimit: an instance registers at most
// system.MaxHelloHandlers user handlers, the most its hello can list; the
// next is refused with ErrInvalidHandler, and a peer still shakes hands
// with it and calls its handlers.
func TestHostileMemoryHandlerLimit(t *testing.T) {
	a, b := pair(t)
	for i := range system.MaxHelloHandlers - 1 { // pair registers no user handler of its own
		if err := b.RegisterHandler(velo.UnaryHandler(fmt.Sprintf("h%04d", i), func(_ context.Context, c *velo.Context) ([]byte, error) {
			return c.Payload, nil
		}).Build()); err != nil {
			t.Fatalf("handler %d: %v", i, err)
		}
	}
	last := velo.UnaryHandler("last", func(context.Context, *velo.Context) ([]byte, error) { return []byte("last"), nil })
	if err := b.RegisterHandler(last.Build()); err != nil {
		t.Fatalf("handler %d of %d: %v", system.MaxHelloHandlers, system.MaxHelloHandlers, err)
	}
	err := b.RegisterHandler(velo.UnaryHandler("one-too-many", func(context.Context, *velo.Context) ([]byte, error) { return nil, nil }).Build())
	if !errors.Is(err, velo.ErrInvalidHandler) || !errors.Is(err, system.ErrHelloLimits) {
		t.Fatalf("handler %d: %v, want ErrInvalidHandler (system.ErrHelloLimits)", system.MaxHelloHandlers+1, err)
	}
	t.Logf("handler %d refused: %v", system.MaxHelloHandlers+1, err)
	got, err := a.Unary("last").Instance(b.InstanceID()).Send(testCtx(t))
	if err != nil || string(got) != "last" {
		t.Fatalf("call after the handshake: %q, %v", got, err)
	}
	names, err := a.ListHandlers(testCtx(t), b.InstanceID())
	if err != nil || len(names) != system.MaxHelloHandlers {
		t.Fatalf("ListHandlers: %d names, %v; want %d", len(names), err, system.MaxHelloHandlers)
	}
}

// renamedTransport is an in-memory transport under another name, with
// optionally a long address.
type renamedTransport struct {
	*mem.Transport
	name string
	pad  int // bytes added to the address
}

func (t *renamedTransport) Name() string { return t.name }

func (t *renamedTransport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	addr, err := t.Transport.Listen(ctx, bind)
	return addr + strings.Repeat("/", t.pad), err
}

// TestHostileMemoryTransportLimit: Build refuses transports its hello
// could not list: more than system.MaxHelloAddresses, a name over
// system.MaxTransportName bytes, an address over system.MaxAddress.
func TestHostileMemoryTransportLimit(t *testing.T) {
	n := mem.NewNetwork()
	many := func(k int) []transport.Transport {
		var ts []transport.Transport
		for i := range k {
			ts = append(ts, &renamedTransport{Transport: mem.New(n), name: fmt.Sprintf("mem%d", i)})
		}
		return ts
	}
	for name, ts := range map[string][]transport.Transport{
		"too many":     many(system.MaxHelloAddresses + 1),
		"long name":    {&renamedTransport{Transport: mem.New(n), name: strings.Repeat("m", system.MaxTransportName+1)}},
		"long address": {&renamedTransport{Transport: mem.New(n), name: "mem", pad: system.MaxAddress}},
	} {
		b := velo.NewBuilder()
		for _, tr := range ts {
			b.AddTransport(tr)
		}
		m, err := b.Build(context.Background())
		if err == nil {
			m.Shutdown(context.Background())
			t.Errorf("%s: Build succeeded", name)
			continue
		}
		if !errors.Is(err, system.ErrHelloLimits) {
			t.Errorf("%s: %v, want system.ErrHelloLimits", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	// The most transports a hello lists are fine.
	m := newMessenger(t, velo.Options{}, many(system.MaxHelloAddresses)...)
	if got := len(m.PeerInfo().Addresses); got != system.MaxHelloAddresses {
		t.Errorf("%d addresses, want %d", got, system.MaxHelloAddresses)
	}
}

// TestHostileMemoryTypedResult: a result that would decode into far more
// memory than it takes (200 K empty strings, 200 KB: a []string of
// 3.2 MB, 16 bytes per byte) fails the caller with ErrBadPayload, raised
// by the caller itself; 4 K of them (64 KB, within the slack) decode.
func TestHostileMemoryTypedResult(t *testing.T) {
	a, b := memPair(t)
	mustRegister(t, b, velo.UnaryHandler("strings", func(_ context.Context, c *velo.Context) ([]byte, error) {
		n := int(binary.BigEndian.Uint32(c.Payload))
		return append([]byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, bytes.Repeat([]byte{0xa0}, n)...), nil
	}))
	for _, n := range []uint32{4_000, 200_000} {
		got, err := velo.TypedUnary[[]string](a, "strings").RawPayload(binary.BigEndian.AppendUint32(nil, n)).Instance(b.InstanceID()).Send(testCtx(t))
		switch {
		case n == 4_000 && (err != nil || len(got) != int(n)):
			t.Errorf("%d empty strings: %d, %v", n, len(got), err)
		case n == 200_000 && (!errors.Is(err, velo.ErrBadPayload) || remoteFlag(t, err)):
			t.Errorf("%d empty strings: %d, %v; want ErrBadPayload raised by the caller", n, len(got), err)
		}
	}
}
