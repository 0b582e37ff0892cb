package velo_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/mpcheck"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/stream"
)

// Fuzz targets of the messenger's decoders, each with a seed corpus in
// testdata/fuzz/<Name>/ that runs as an ordinary test under go test:
//
//   - FuzzHelloDecode: the handshake payload (system.HelloMsg) from
//     arbitrary bytes;
//   - FuzzHandshake: a raw connection says hello with an arbitrary
//     payload;
//   - FuzzSessionFrames: a raw connection completes a valid handshake,
//     then sends arbitrary bytes (frames or not);
//   - FuzzTypedPayload: a TypedUnaryHandler called with an arbitrary
//     payload.
//
// The frame codec (internal/wire: FuzzParseFrame, FuzzFrameReader) and the
// event messages (events: FuzzDeliver) have fuzz targets of their own;
// make fuzz runs them all. A panic anywhere on a receive path would crash
// the fuzzing process, which is what the session targets look for; they
// also check that the messenger keeps serving another peer afterwards.
//
// The seed files are written by TestFuzzWriteSeeds when
// VELO_WRITE_FUZZ_SEEDS=1 is set.

// fzPipe is a transport whose connections the fuzz targets open by hand:
// attach serves one end of an in-memory pipe as an inbound connection of
// the messenger and returns the other end, raw. It cannot dial.
type fzPipe struct {
	group *stream.Group
	mu    sync.Mutex
	bind  transport.Binder // guarded by mu
}

var _ transport.Transport = (*fzPipe)(nil)

const fzPipeName = "fzpipe"

func (p *fzPipe) Name() string  { return fzPipeName }
func (p *fzPipe) MaxFrame() int { return p.group.MaxFrame() }
func (p *fzPipe) Close() error  { return p.group.Close() }

func (p *fzPipe) Listen(_ context.Context, bind transport.Binder) (string, error) {
	p.mu.Lock()
	p.bind = bind
	p.mu.Unlock()
	return "nowhere", nil
}

func (p *fzPipe) Dial(context.Context, string, transport.Binder) (transport.Conn, error) {
	return nil, errors.New("fzpipe: cannot dial")
}

func (p *fzPipe) attach() (net.Conn, error) {
	p.mu.Lock()
	bind := p.bind
	p.mu.Unlock()
	raw, served := net.Pipe()
	if _, err := p.group.Serve(served, bind); err != nil {
		raw.Close()
		return nil, err
	}
	return raw, nil
}

// fzIn and fzOut are the typed handler's input and output: most kinds of
// field MessagePack has.
type fzIn struct {
	Name  string
	N     int64
	U     uint8
	F     float64
	Ok    bool
	Tags  []string
	Attrs map[string]int
	Blob  []byte
	Inner *fzInner
	List  []fzInner
	When  time.Time
	Any   any
}

type fzInner struct {
	X int
	Y string
}

type fzOut struct {
	Name  string
	N     int64
	Blob  []byte
	Count int
}

// fzFixture is an instance under test ("server"), reachable both over the
// raw pipe transport and over mem, where a well-behaved instance ("good")
// calls it. One per fuzz target, shared by all its inputs.
type fzFixture struct {
	server, good *velo.Messenger
	pipe         *fzPipe
	rawID        peer.ID // the identity raw connections say hello with
	lastID       peer.ID // FuzzHandshake: the id of the last valid hello
	hello        []byte  // a valid _hello request frame from rawID
}

func newFzFixture(f *testing.F) *fzFixture {
	f.Helper()
	n := mem.NewNetwork()
	pipe := &fzPipe{group: stream.NewGroup(stream.Options{ReadBuffer: 4 << 10})}
	ctx := context.Background()
	server, err := velo.NewBuilder().AddTransport(mem.New(n)).AddTransport(pipe).
		Options(velo.Options{HandshakeTimeout: 2 * time.Second}).Build(ctx)
	if err != nil {
		f.Fatal(err)
	}
	good, err := velo.NewBuilder().AddTransport(mem.New(n)).Build(ctx)
	if err != nil {
		server.Shutdown(ctx)
		f.Fatal(err)
	}
	fx := &fzFixture{server: server, good: good, pipe: pipe, rawID: peer.NewID()}
	f.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		good.Shutdown(sctx)
		server.Shutdown(sctx)
	})
	for _, h := range []*velo.HandlerBuilder{
		velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }),
		velo.UnaryHandler("inline", func(_ context.Context, c *velo.Context) ([]byte, error) { return c.Payload, nil }).Inline(),
		velo.AMHandler("sink", func(context.Context, *velo.Context) error { return nil }).Ordered(),
		velo.TypedUnaryHandler("typed", func(_ context.Context, c *velo.TypedContext[fzIn]) (fzOut, error) {
			in := c.Input
			return fzOut{Name: in.Name, N: in.N, Blob: in.Blob, Count: len(in.Tags) + len(in.Attrs) + len(in.List)}, nil
		}),
	} {
		if err := server.RegisterHandler(h.Build()); err != nil {
			f.Fatal(err)
		}
	}
	if err := good.RegisterPeer(server.PeerInfo()); err != nil {
		f.Fatal(err)
	}
	fx.hello = fzHello(f, fx.rawID)
	fx.checkServing(f)
	return fx
}

// fzHello is a valid _hello request frame from id.
func fzHello(tb testing.TB, id peer.ID) []byte {
	p, err := (&system.HelloMsg{
		Info:     peer.Info{ID: id, Addresses: map[string]string{fzPipeName: "nowhere"}},
		MaxFrame: wire.DefaultMaxFrame,
		Protocol: wire.Version,
	}).Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: system.Hello, Payload: p})
}

// checkServing fails unless the good instance's call to the server
// succeeds: whatever a raw connection did, other peers never notice.
func (fx *fzFixture) checkServing(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := fx.good.Unary("echo").RawPayload([]byte("still serving")).Instance(fx.server.InstanceID()).Send(ctx)
	if err != nil || string(got) != "still serving" {
		t.Fatalf("the server stopped serving another peer: %q, %v", got, err)
	}
}

// raw opens a raw connection to the server, with a deadline on everything.
func (fx *fzFixture) raw(t testing.TB) net.Conn {
	t.Helper()
	c, err := fx.pipe.attach()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// readResponse reads frames from r until a response comes, skipping
// pings; an error means the connection ended (or the deadline passed).
func fzReadResponse(r *bufio.Reader) (wire.Response, error) {
	for {
		f, err := readRawFrame(r)
		if err != nil {
			return wire.Response{}, err
		}
		typ, body, err := wire.ParseHeader(f)
		if err != nil {
			return wire.Response{}, err
		}
		if typ == wire.TypeResponse {
			return wire.ParseResponse(body)
		}
	}
}

// sendAndDrain writes data on c while a goroutine reads (and drops)
// whatever the server answers, then closes c and waits for the reader.
// Write errors are expected: the server closes a connection that sends a
// malformed frame.
func fzSendAndDrain(c net.Conn, data []byte) {
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(drained)
	}()
	c.Write(data)
	c.Close()
	<-drained
}

func FuzzHelloDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := system.DecodeHello(data)
		if err != nil {
			return
		}
		b, err := h.Encode()
		if err != nil {
			t.Fatalf("a decoded hello does not encode: %v (%+v)", err, h)
		}
		h2, err := system.DecodeHello(b)
		if err != nil {
			t.Fatalf("a re-encoded hello does not decode: %v", err)
		}
		if h2.Info.ID != h.Info.ID || !maps.Equal(h2.Info.Addresses, h.Info.Addresses) ||
			len(h2.Handlers) != len(h.Handlers) || h2.MaxFrame != h.MaxFrame || h2.Protocol != h.Protocol {
			t.Fatalf("hello changed in a round trip: %+v, then %+v", h, h2)
		}
	})
}

// FuzzHandshake: a raw connection sends _hello with an arbitrary payload.
// The server answers it (OK exactly when the payload decodes with a
// non-zero instance id and this protocol version) or closes the connection; it never panics and
// keeps serving the good peer.
func FuzzHandshake(f *testing.F) {
	fx := newFzFixture(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		c := fx.raw(t)
		defer c.Close()
		req := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindUnary, ID: 1, Handler: system.Hello, Payload: payload})
		werr := make(chan error, 1)
		go func() { _, err := c.Write(req); werr <- err }()
		resp, err := fzReadResponse(bufio.NewReader(c))
		<-werr
		h, derr := system.DecodeHello(payload)
		valid := derr == nil && !h.Info.ID.IsZero() && h.Protocol == wire.Version
		defer func() {
			if valid {
				fx.lastID = h.Info.ID
			}
		}()
		switch {
		case err == nil && resp.Status == wire.StatusOK:
			if !valid {
				t.Fatalf("hello accepted although its payload does not decode to an instance (%v, id %s)", derr, h.Info.ID)
			}
			if _, err := system.DecodeHello(resp.Payload); err != nil {
				t.Fatalf("the server's hello answer does not decode: %v", err)
			}
		case err == nil:
			// Refused with a status: not for a valid hello, unless it
			// announced a frame limit too small for the answer.
			tooSmall := resp.Status == wire.StatusPayloadTooLarge && h.MaxFrame > 0
			// Nor for one that claims an id already connected (the
			// previous input's, whose connection the server may not
			// have seen closed yet, or the good peer's) or the
			// server's own: a hello never takes over a connected id.
			taken := resp.Status == wire.StatusPeerUnknown &&
				(h.Info.ID == fx.lastID || h.Info.ID == fx.server.InstanceID() || h.Info.ID == fx.good.InstanceID())
			if valid && !tooSmall && !taken {
				t.Fatalf("valid hello refused with status %d (%s)", resp.Status, resp.Error)
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatal("the server neither answered the hello nor closed the connection within 5 s")
		default: // closed
			if valid {
				t.Fatalf("valid hello: connection closed (%v)", err)
			}
		}
		c.Close()
		fx.checkServing(t)
	})
}

// FuzzSessionFrames: after a valid handshake, a raw connection sends
// arbitrary bytes. The server handles what is well formed, closes the
// connection on what is not, never panics, and keeps serving the good
// peer.
func FuzzSessionFrames(f *testing.F) {
	fx := newFzFixture(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c := fx.raw(t)
		defer c.Close()
		// A fresh id each time: the connection of the previous input may
		// not be seen closed yet, and a second connection under a
		// connected id is refused.
		if _, err := c.Write(fzHello(t, peer.NewID())); err != nil {
			t.Fatalf("writing the hello: %v", err)
		}
		resp, err := fzReadResponse(bufio.NewReader(c))
		if err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("valid hello: %v, status %d (%s)", err, resp.Status, resp.Error)
		}
		fzSendAndDrain(c, data)
		fx.checkServing(t)
	})
}

// FuzzStreamMessages: after a valid handshake, a raw connection sends
// messages of the streams protocol with arbitrary payloads, aimed (when
// sel says so) at a stream the server has open: no panic, the stream is
// not taken from its own sender's connection, and another peer is still
// served after each input.
func FuzzStreamMessages(f *testing.F) {
	fx := newFzFixture(f)
	r, err := velo.OpenStream[[]byte](fx.server, velo.StreamOptions{Window: 4 << 10})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(r.Cancel)
	names := []string{system.StreamAttach, system.StreamItem, system.StreamEnd, system.StreamCredit, system.StreamCancel}
	id := r.Handle().ID
	f.Add(uint8(0x10), make([]byte, 16))                  // attach to the open stream
	f.Add(uint8(0x11), make([]byte, 20))                  // an item for it
	f.Add(uint8(0x12), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0}) // a short end
	f.Add(uint8(0x03), make([]byte, 16))                  // credit for no sender
	f.Add(uint8(0x04), make([]byte, 4000))                // a long cancel
	f.Fuzz(func(t *testing.T, sel uint8, payload []byte) {
		name := names[int(sel&0x0f)%len(names)]
		if sel&0x10 != 0 && len(payload) >= 8 {
			payload = append(binary.LittleEndian.AppendUint64(nil, id), payload[8:]...)
		}
		c := fx.raw(t)
		defer c.Close()
		if _, err := c.Write(fzHello(t, peer.NewID())); err != nil {
			t.Fatalf("writing the hello: %v", err)
		}
		if resp, err := fzReadResponse(bufio.NewReader(c)); err != nil || resp.Status != wire.StatusOK {
			t.Fatalf("valid hello: %v, status %d (%s)", err, resp.Status, resp.Error)
		}
		frame := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, Handler: name, Payload: payload})
		fzSendAndDrain(c, frame)
		fx.checkServing(t)
	})
}

// FuzzTypedPayload: a TypedUnaryHandler gets an arbitrary payload. The
// caller gets the handler's result exactly when the payload decodes into
// the handler's input type (and the result matches what was decoded), and
// ErrBadPayload otherwise; never a panic.
func FuzzTypedPayload(f *testing.F) {
	fx := newFzFixture(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := velo.TypedUnary[fzOut](fx.good, "typed").RawPayload(payload).Instance(fx.server.InstanceID()).Send(ctx)
		var want fzIn
		var derr error // an empty payload is the zero input
		if len(payload) > 0 {
			derr = mpcheck.Unmarshal(payload, &want) // vetted, and a decoder panic is an error
		}
		switch {
		case err == nil:
			if derr != nil {
				t.Fatalf("handler answered although the payload does not decode: %v", derr)
			}
			if out.Name != want.Name || out.N != want.N || string(out.Blob) != string(want.Blob) ||
				out.Count != len(want.Tags)+len(want.Attrs)+len(want.List) {
				t.Fatalf("handler answered %+v for input %+v", out, want)
			}
		case errors.Is(err, velo.ErrBadPayload):
			if derr == nil {
				t.Fatalf("payload refused (%v) although it decodes: %+v", err, want)
			}
			if !remoteFlag(t, err) {
				t.Fatalf("bad payload reported by the caller, not the handler: %v", err)
			}
		default:
			t.Fatalf("typed handler with an arbitrary payload: %v (%s), want a result or ErrBadPayload", err, relErrCode(err))
		}
	})
}

// ---- seeds ----

// fzSeeds are the committed seed corpora, by target.
func fzSeeds(t *testing.T) map[string]map[string][]byte {
	id := peer.ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	hello := func(h system.HelloMsg) []byte {
		b, err := h.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mp := func(v any) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetSortMapKeys(true) // the same bytes every time
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	hellos := map[string][]byte{
		"valid":          hello(system.HelloMsg{Info: peer.Info{ID: id, Addresses: map[string]string{"tcp": "127.0.0.1:7000"}}, Handlers: []string{"echo", "add"}, MaxFrame: wire.DefaultMaxFrame, Protocol: wire.Version}),
		"zero-id":        hello(system.HelloMsg{Info: peer.Info{Addresses: map[string]string{"tcp": "127.0.0.1:7000"}}, Protocol: wire.Version}),
		"no-addresses":   hello(system.HelloMsg{Info: peer.Info{ID: id}, Protocol: wire.Version}),
		"max-frame-tiny": hello(system.HelloMsg{Info: peer.Info{ID: id}, MaxFrame: 1, Protocol: wire.Version}),
		"max-frame-neg":  hello(system.HelloMsg{Info: peer.Info{ID: id}, MaxFrame: -1, Protocol: wire.Version}),
		"protocol-99":    hello(system.HelloMsg{Info: peer.Info{ID: id}, Protocol: 99}),
		"empty":          {},
		"msgpack-nil":    {0xc0},
		"msgpack-array":  mp([]any{1, "x", true}),
		"id-wrong-type":  mp(map[string]any{"info": map[string]any{"id": 42}}),
		"id-short-hex":   mp(map[string]any{"info": map[string]any{"id": "0102"}}),
		// Lengths far beyond the input. (With 0xffffffff instead of 1 MiB,
		// the id's str32 makes msgpack allocate 4 GiB: see
		// TestHostileHelloLengthBomb.)
		"huge-array":     {0x81, 0xa8, 'h', 'a', 'n', 'd', 'l', 'e', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff},
		"long-str-claim": {0x81, 0xa4, 'i', 'n', 'f', 'o', 0x81, 0xa2, 'i', 'd', 0xdb, 0x00, 0x10, 0x00, 0x00},
	}

	req := func(r wire.Request) []byte { return wire.AppendRequest(nil, &r) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	timeoutOverMax := req(wire.Request{Kind: wire.KindUnary, ID: 5, Handler: "echo"})
	for i := range 8 { // the timeout field, at body offset 9
		timeoutOverMax[wire.HeaderLen+9+i] = 0xff
	}
	badKind := req(wire.Request{Kind: wire.KindUnary, ID: 14, Handler: "echo"})
	badKind[wire.HeaderLen] = 9 // the kind, first byte of the body
	dupHeader := cat(
		[]byte{0, 0, 0, 0}, []byte{wire.Version, byte(wire.TypeRequest), byte(wire.KindUnary)},
		[]byte{0, 0, 0, 0, 0, 0, 0, 6}, make([]byte, 8), []byte{4}, []byte("echo"),
		[]byte{0, 2}, []byte{0, 1, 'k', 0, 0, 0, 1, 'v'}, []byte{0, 1, 'k', 0, 0, 0, 1, 'w'},
	)
	dupHeader[3] = byte(len(dupHeader) - wire.PrefixLen)
	many := map[string]string{}
	for i := range wire.DefaultMaxHeaders + 1 {
		many[fmt.Sprint("h", i)] = "v"
	}
	frames := map[string][]byte{
		"empty":               {},
		"unary-echo":          req(wire.Request{Kind: wire.KindUnary, ID: 2, Timeout: time.Second, Handler: "echo", Headers: map[string]string{"k": "v"}, Payload: []byte("hi")}),
		"unary-inline":        req(wire.Request{Kind: wire.KindUnary, ID: 2, Handler: "inline", Payload: []byte("hi")}),
		"amsync-sink":         req(wire.Request{Kind: wire.KindAMSync, ID: 3, Handler: "sink"}),
		"amsend-sink":         req(wire.Request{Kind: wire.KindAMSend, ID: 4, Handler: "sink", Payload: []byte("x")}),
		"typed-bad-payload":   req(wire.Request{Kind: wire.KindUnary, ID: 5, Handler: "typed", Payload: []byte{0xc1}}),
		"unknown-handler":     req(wire.Request{Kind: wire.KindUnary, ID: 6, Handler: "nope"}),
		"list-handlers":       req(wire.Request{Kind: wire.KindUnary, ID: 7, Handler: system.ListHandlers}),
		"hello-again":         req(wire.Request{Kind: wire.KindUnary, ID: 8, Handler: system.Hello, Payload: hellos["valid"]}),
		"event-subscribe":     req(wire.Request{Kind: wire.KindAMSend, ID: 9, Handler: "_event_subscribe", Payload: []byte{1, 0, 1}}),
		"same-id-twice":       cat(req(wire.Request{Kind: wire.KindUnary, ID: 10, Handler: "echo"}), req(wire.Request{Kind: wire.KindUnary, ID: 10, Handler: "echo"})),
		"request-then-cancel": cat(req(wire.Request{Kind: wire.KindUnary, ID: 11, Timeout: time.Hour, Handler: "echo"}), wire.AppendCancel(nil, 11)),
		"cancel-unknown":      wire.AppendCancel(nil, 12345),
		"ping":                wire.AppendPing(nil, false, 7),
		"pong":                wire.AppendPing(nil, true, 7),
		"response-unknown-id": wire.AppendResponse(nil, &wire.Response{ID: 99, Status: wire.StatusHandlerError, Error: "boom", Payload: []byte("p")}),
		"goaway":              wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown, Message: "bye"}),
		"frames-then-garbage": cat(wire.AppendPing(nil, false, 1), req(wire.Request{Kind: wire.KindUnary, ID: 13, Handler: "echo"}), []byte{0xde, 0xad, 0xbe, 0xef}),
		"bad-version":         {0, 0, 0, 2, wire.Version + 1, byte(wire.TypePing)},
		"bad-type":            {0, 0, 0, 2, wire.Version, 0xee},
		"length-one":          {0, 0, 0, 1, wire.Version},
		"oversize-prefix":     {0xff, 0xff, 0xff, 0xff, wire.Version, byte(wire.TypeRequest)},
		"half-frame":          {0, 0, 0, 100, wire.Version, byte(wire.TypeRequest), 1, 2, 3, 4},
		"bad-kind":            badKind,
		"empty-name":          {0, 0, 0, 22, wire.Version, byte(wire.TypeRequest), byte(wire.KindUnary), 0, 0, 0, 0, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"timeout-over-max":    timeoutOverMax,
		"duplicate-header":    dupHeader,
		"too-many-headers":    req(wire.Request{Kind: wire.KindUnary, ID: 16, Handler: "echo", Headers: many}),
		"goaway-trailing":     append(wire.AppendGoAway(nil, wire.GoAway{Status: wire.StatusShuttingDown}), 0),
	}
	frames["goaway-trailing"][3]++ // the extra byte inside the frame

	typed := map[string][]byte{
		"valid": mp(fzIn{Name: "n", N: -5, U: 7, F: 1.5, Ok: true, Tags: []string{"a", "b"}, Attrs: map[string]int{"x": 1},
			Blob: []byte{0, 1}, Inner: &fzInner{X: 1, Y: "y"}, List: []fzInner{{2, "z"}}, When: time.Unix(1700000000, 5).UTC(), Any: map[string]any{"k": []any{1, "v"}}}),
		"zero":           mp(fzIn{}),
		"empty":          {},
		"nil":            {0xc0},
		"int-for-struct": mp(42),
		"wrong-types":    mp(map[string]any{"Name": 1, "N": "x", "Tags": "no", "Attrs": []int{1}}),
		"overflow-u8":    mp(map[string]any{"U": 300}),
		"huge-array":     {0x81, 0xa4, 'T', 'a', 'g', 's', 0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge-map":       {0x81, 0xa5, 'A', 't', 't', 'r', 's', 0xdf, 0xff, 0xff, 0xff, 0xff},
		"long-bin-claim": {0x81, 0xa4, 'B', 'l', 'o', 'b', 0xc6, 0x00, 0x10, 0x00, 0x00},
		"long-str-claim": {0x81, 0xa4, 'B', 'l', 'o', 'b', 0xdb, 0x00, 0x10, 0x00, 0x00},
		"deep-any":       mp(map[string]any{"Any": []any{[]any{[]any{[]any{map[string]any{"a": []any{1}}}}}}}),
		"bad-time":       mp(map[string]any{"When": "yesterday"}),
		"never-used":     {0xc1},
		"trailing-bytes": append(mp(fzIn{Name: "t"}), 0x01, 0x02),
	}
	return map[string]map[string][]byte{
		"FuzzHelloDecode":   hellos,
		"FuzzHandshake":     hellos,
		"FuzzSessionFrames": frames,
		"FuzzTypedPayload":  typed,
	}
}

// TestFuzzWriteSeeds writes the seed corpora under testdata/fuzz when
// VELO_WRITE_FUZZ_SEEDS=1; otherwise it checks that each one is there.
// (The corpora run as tests through the Fuzz functions themselves.)
func TestFuzzWriteSeeds(t *testing.T) {
	write := os.Getenv("VELO_WRITE_FUZZ_SEEDS") == "1"
	for target, seeds := range fzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range seeds {
			path := filepath.Join(dir, name)
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if write {
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			// Existence only: a frame with several headers comes out in
			// map order, different each time.
			if _, err := os.Stat(path); err != nil {
				t.Errorf("seed %s/%s missing: %v (VELO_WRITE_FUZZ_SEEDS=1 writes it)", target, name, err)
			}
		}
	}
}
