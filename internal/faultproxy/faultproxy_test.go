// The tests are named TestReliability… so that the reliability suite's
// -run pattern (Soak|Hostile|Reliab|Fuzz) picks them up.

package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a TCP listener whose accepted connections the test takes from
// conns and drives by hand. Everything is closed at cleanup.
type server struct {
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{}
}

func newServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, conns: make(chan net.Conn, 16), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-s.done
		close(s.conns)
		for c := range s.conns {
			c.Close()
		}
	})
	return s
}

// accept returns the next connection the server accepted.
func (s *server) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the server accepted no connection")
		return nil
	}
}

// noConn checks that the server accepted nothing.
func (s *server) noConn(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.conns:
		c.Close()
		t.Fatal("the server accepted a connection")
	default:
	}
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// connect dials the proxy and returns the client end and the server end.
func connect(t *testing.T, p *faultproxy.Proxy, s *server) (client, srv net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, s.accept(t)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads exactly want from c within 5 s.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// silent checks that nothing arrives on c for d, and that c stays open.
func silent(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := c.Read(b[:])
	if n > 0 {
		t.Fatalf("read %q, want nothing", b[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want nothing and the connection open", err)
	}
}

// ended reads c until it ends and returns the error that ended it (io.EOF
// for a close).
func ended(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [4096]byte
	for {
		_, err := c.Read(b[:])
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the connection is still open after 5 s")
		}
		return err
	}
}

func TestReliabilityPassThrough(t *testing.T) {
	s := newServer(t)
	p := newProxy(t, s.ln.Addr().String())
	if p.Target() != s.ln.Addr().String() {
		t.Errorf("Target = %s", p.Target())
	}
	c, sc := connect(t, p, s)
	write(t, c, "ping")
	expect(t, sc, "ping")
	write(t, sc, "pong")
	expect(t, c, "pong")

	// A close travels as a half-close: the other way still works.
	c.(*net.TCPConn).CloseWrite()
	if err := ended(t, sc); err != io.EOF {
		t.Fatalf("server after the client's close: %v, want EOF", err)
	}
	write(t, sc, "last words")
	expect(t, c, "last words")
	sc.Close()
	if err := ended(t, c); err != io.EOF {
		t.Fatalf("client after the server's close: %v, want EOF", err)
	}
	waitFor(t, "the connection to be forgotten", func() bool { return p.Stats().Open == 0 })
	st := p.Stats()
	if st.Accepted != 1 || st.Up != 4 || st.Down != int64(len("pong")+len("last words")) || st.Resets != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// waitFor polls cond for 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// oneWay measures how long a byte takes from w to r.
func oneWay(t *testing.T, w, r net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	write(t, w, "x")
	expect(t, r, "x")
	return time.Since(start)
}

func TestReliabilityLatencyPerDirection(t *testing.T) {
	const lat = 150 * time.Millisecond
	s := newServer(t)
	p := newProxy(t, s.ln.Addr().String())
	c, sc := connect(t, p, s) // opened before the mode is set

	for _, tc := range []struct {
		mode     faultproxy.Mode
		up, down bool // delayed
	}{
		{faultproxy.Latency(lat, 0), true, false},
		{faultproxy.Latency(0, lat), false, true},
		{faultproxy.Latency(lat, lat), true, true},
		{faultproxy.PassThrough(), false, false},
	} {
		p.Set(tc.mode)
		c2, sc2 := connect(t, p, s) // opened after
		for _, pair := range [][2]net.Conn{{c, sc}, {c2, sc2}} {
			up := oneWay(t, pair[0], pair[1])
			down := oneWay(t, pair[1], pair[0])
			check := func(dir string, d time.Duration, delayed bool) {
				if delayed && d < lat {
					t.Errorf("%v: %s took %v, want >= %v", tc.mode, dir, d, lat)
				}
				if !delayed && d >= lat {
					t.Errorf("%v: %s took %v, want < %v", tc.mode, dir, d, lat)
				}
			}
			check("up", up, tc.up)
			check("down", down, tc.down)
		}
	}
}

// TestReliabilityLatencyKeepsThroughput: bytes read while earlier ones
// wait are not delayed again: ten writes 20 ms apart under 200 ms of
// latency all arrive within about 200 ms of their own write, not one after
// the other.
func TestReliabilityLatencyKeepsThroughput(t *testing.T) {
	const lat = 200 * time.Millisecond
	s := newServer(t)
	p := newProxy(t, s.ln.Addr().String())
	p.Set(faultproxy.Latency(lat, 0))
	c, sc := connect(t, p, s)
	start := time.Now()
	go func() {
		for range 10 {
			c.Write([]byte("y"))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	expect(t, sc, "yyyyyyyyyy")
	if d := time.Since(start); d < lat || d > 10*lat {
		t.Errorf("ten writes 20 ms apart took %v under %v of latency, want about %v", d, lat, lat+180*time.Millisecond)
	}
}

func TestReliabilityBandwidth(t *testing.T) {
	const bw = 50 << 10
	s := newServer(t)
	p := newProxy(t, s.ln.Addr().String())
	c, sc := connect(t, p, s)
	p.Set(faultproxy.Bandwidth(bw))
	data := bytes.Repeat([]byte("b"), bw) // one second's worth
	go c.Write(data)
	start := time.Now()
	expect(t, sc, string(data))
	if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
		t.Errorf("%d bytes at %d B/s took %v, want about 1 s", len(data), bw, d)
	}
	// Down too, on a new connection.
	c2, sc2 := connect(t, p, s)
	go sc2.Write(data[:bw/2])
	start = time.Now()
	expect(t, c2, string(data[:bw/2]))
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("%d bytes down at %d B/s took %v, want about 500 ms", bw/2, bw, d)
	}

	p.Set(faultproxy.PassThrough())
	go c.Write(data)
	start = time.Now()
	expect(t, sc, string(data))
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("pass-through: %d bytes took %v", len(data), d)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func TestReliabilityReset(t *testing.T) {
	s := newServer(t)
	p := newProxy(t, s.ln.Addr().String())
	c, sc := connect(t, p, s)
	write(t, c, "hi")
	expect(t, sc, "hi")

	p.Set(faultproxy.Reset())
	if err := ended(t, c); !isReset(err) {
		t.Errorf("client: %v, want ECONNRESET", err)
	}
	if err := ended(t, sc); !isReset(err) {
		t.Errorf("server: %v, want ECONNRESET", err)
	}

	// New connections are reset as soon as they are accepted, and never
	// reach the server.
	c2, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err == nil { // the reset may come before the dial returns, or after
		defer c2.Close()
		err = ended(t, c2)
	}
	if !isReset(err) {
		t.Errorf("new client: %v, want ECONNRESET", err)
	}
	s.noConn(t)
	if st := p.Stats(); st.Resets != 2 {
		t.Errorf("Resets = %d, want 2", st.Resets)
	}

	p.Set(faultproxy.PassThrough())
	c3, sc3 := connect(t, p, s)
	write(t, c3, "again")
	expect(t, sc3, "again")
}

func TestReliabilityBlackHole(t *testing.T) {
	s := newServer(t)
	p := newProxy(t, s.ln.Addr().String())
	c, sc := connect(t, p, s)
	write(t, c, "before")
	expect(t, sc, "before")

	p.Set(faultproxy.BlackHole())
	write(t, c, "held up")
	write(t, sc, "held down")
	silent(t, sc, 300*time.Millisecond)
	silent(t, c, 10*time.Millisecond)
	// A close is held too: the server does not learn of it.
	c.(*net.TCPConn).CloseWrite()
	silent(t, sc, 100*time.Millisecond)

	// A connection made during the black hole reaches nobody yet.
	c2, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	write(t, c2, "new")

	p.Set(faultproxy.PassThrough())
	expect(t, sc, "held up")
	expect(t, c, "held down")
	if err := ended(t, sc); err != io.EOF {
		t.Errorf("server after the held close: %v, want EOF", err)
	}
	sc2 := s.accept(t)
	expect(t, sc2, "new")
}

func TestReliabilityCut(t *testing.T) {
	for _, d := range []faultproxy.Direction{faultproxy.Up, faultproxy.Down} {
		t.Run(d.String(), func(t *testing.T) {
			s := newServer(t)
			p := newProxy(t, s.ln.Addr().String())
			c, sc := connect(t, p, s)
			from, to := c, sc // the cut way
			if d == faultproxy.Down {
				from, to = sc, c
			}
			p.Set(faultproxy.Cut(d))
			write(t, from, "lost")
			write(t, to, "kept") // the other way still flows
			expect(t, from, "kept")
			silent(t, to, 300*time.Millisecond)
			if st := p.Stats(); st.Dropped != 4 {
				t.Errorf("Dropped = %d, want 4", st.Dropped)
			}

			p.Set(faultproxy.PassThrough())
			write(t, from, "back")
			expect(t, to, "back") // and not "lost"

			// Under a cut, a close still goes through.
			p.Set(faultproxy.Cut(d))
			from.(*net.TCPConn).CloseWrite()
			if err := ended(t, to); err != io.EOF {
				t.Errorf("after a close under the cut: %v, want EOF", err)
			}
		})
	}
}

func TestReliabilityTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProxy(t, addr)
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err == nil { // the reset may come before the dial returns, or after
		defer c.Close()
		err = ended(t, c)
	}
	if !isReset(err) {
		t.Errorf("client of an unreachable target: %v, want ECONNRESET", err)
	}
}

// TestReliabilityCloseStopsEverything: Close ends connections in every
// state (idle, black-holed with bytes held, delayed, throttled), refuses
// new ones, and leaves no goroutine behind.
func TestReliabilityCloseStopsEverything(t *testing.T) {
	s := newServer(t)
	before := goleak.IgnoreCurrent() // the server's goroutine
	p, err := faultproxy.New(s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	for _, m := range []faultproxy.Mode{
		faultproxy.PassThrough(),
		faultproxy.Latency(time.Hour, time.Hour),
		faultproxy.Bandwidth(1),
		faultproxy.BlackHole(),
	} {
		p.Set(m)
		c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("pending bytes"))
		clients = append(clients, c)
	}
	waitFor(t, "every connection to open", func() bool { return p.Stats().Open == 4 })

	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
		})
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait() // every client saw its connection end
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts after Close")
	}
	if n := p.Stats().Open; n != 0 {
		t.Errorf("%d connections open after Close", n)
	}
	goleak.VerifyNone(t, before)
}

func TestReliabilityModeString(t *testing.T) {
	for m, want := range map[faultproxy.Mode]string{
		faultproxy.PassThrough():                      "pass-through",
		faultproxy.BlackHole():                        "black-hole",
		faultproxy.Reset():                            "reset",
		faultproxy.Cut(faultproxy.Up):                 "cut up",
		faultproxy.Latency(time.Millisecond, 0):       "latency up 1ms down 0s",
		faultproxy.Bandwidth(10):                      "bandwidth up 10 B/s down 10 B/s",
		{BlackHole: true, Cut: faultproxy.Both}:       "black-hole, cut both",
		{UpLatency: time.Second, DownBandwidth: 1000}: "latency up 1s down 0s, bandwidth up 0 B/s down 1000 B/s",
	} {
		if got := m.String(); got != want {
			t.Errorf("String = %q, want %q", got, want)
		}
	}
}
