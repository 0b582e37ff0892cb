// Package faultproxy is a TCP proxy for tests: it sits between two velo
// instances (or any TCP client and server) and puts network faults between
// them, switchable at run time.
//
//	p, err := faultproxy.New(serverAddr) // listens on 127.0.0.1:0
//	defer p.Close()
//	// the client dials p.Addr() instead of serverAddr
//	p.Set(faultproxy.Latency(20*time.Millisecond, 0))
//	p.Set(faultproxy.BlackHole()) // the half-open case
//	p.Set(faultproxy.PassThrough())
//
// A mode applies at once to every connection, those open and those yet to
// come. The faults:
//
//   - added latency, per direction: bytes are delivered no sooner than the
//     latency after the proxy read them; reading goes on meanwhile, so a
//     latency does not lower the throughput;
//   - a bandwidth limit, per direction and connection, in bytes per second;
//   - reset: every connection is reset on both sides (SO_LINGER 0, then
//     close: the peers read ECONNRESET), and a new one is reset as soon as
//     it is accepted;
//   - black hole: nothing is forwarded either way and nothing is closed; the
//     bytes (and a close) are held, as a network that lost the peer without
//     either end noticing would hold them, and flow again when the mode
//     changes;
//   - cut, per direction: the bytes travelling that way are read and
//     dropped, lost for good; a close still goes through.
//
// Close stops the listener, closes every connection and waits for every
// goroutine of the proxy.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names one way through the proxy.
type Direction uint8

const (
	// Up is from the client (the side that dialed the proxy) to the
	// target.
	Up Direction = 1 << iota
	// Down is from the target back to the client.
	Down
	// Both is Up and Down.
	Both = Up | Down
)

func (d Direction) String() string {
	switch d {
	case Up:
		return "up"
	case Down:
		return "down"
	case Both:
		return "both"
	}
	return "none"
}

// Mode is what the proxy does to the bytes it forwards. The zero Mode
// forwards everything at once, untouched.
type Mode struct {
	// UpLatency and DownLatency delay the bytes of each direction.
	UpLatency, DownLatency time.Duration
	// UpBandwidth and DownBandwidth cap the bytes per second forwarded on
	// each connection in each direction. Zero: no cap.
	UpBandwidth, DownBandwidth int
	// BlackHole stops forwarding both ways without closing anything; what
	// arrives meanwhile is held (up to the proxy's and the kernel's
	// buffers, after which the senders block) and delivered once the mode
	// changes.
	BlackHole bool
	// Cut drops the bytes travelling in these directions. A close still
	// goes through.
	Cut Direction
	// Reset resets every connection on both sides, and each new one as
	// soon as it is accepted.
	Reset bool
}

// PassThrough forwards everything at once.
func PassThrough() Mode { return Mode{} }

// Latency delays each direction by its own amount.
func Latency(up, down time.Duration) Mode { return Mode{UpLatency: up, DownLatency: down} }

// Bandwidth caps both directions of every connection at bytesPerSec.
func Bandwidth(bytesPerSec int) Mode {
	return Mode{UpBandwidth: bytesPerSec, DownBandwidth: bytesPerSec}
}

// BlackHole holds everything, forwarding nothing and closing nothing.
func BlackHole() Mode { return Mode{BlackHole: true} }

// Cut drops the bytes travelling in direction d.
func Cut(d Direction) Mode { return Mode{Cut: d} }

// Reset resets every connection, current and new.
func Reset() Mode { return Mode{Reset: true} }

func (m Mode) String() string {
	var parts []string
	if m.Reset {
		parts = append(parts, "reset")
	}
	if m.BlackHole {
		parts = append(parts, "black-hole")
	}
	if m.Cut != 0 {
		parts = append(parts, "cut "+m.Cut.String())
	}
	if m.UpLatency > 0 || m.DownLatency > 0 {
		parts = append(parts, fmt.Sprintf("latency up %v down %v", m.UpLatency, m.DownLatency))
	}
	if m.UpBandwidth > 0 || m.DownBandwidth > 0 {
		parts = append(parts, fmt.Sprintf("bandwidth up %d B/s down %d B/s", m.UpBandwidth, m.DownBandwidth))
	}
	if len(parts) == 0 {
		return "pass-through"
	}
	return strings.Join(parts, ", ")
}

func (m Mode) latency(d Direction) time.Duration {
	if d == Up {
		return m.UpLatency
	}
	return m.DownLatency
}

func (m Mode) bandwidth(d Direction) int {
	if d == Up {
		return m.UpBandwidth
	}
	return m.DownBandwidth
}

// Stats counts what the proxy did since New.
type Stats struct {
	Accepted int64 // connections accepted
	Open     int64 // connections open now
	Resets   int64 // connections the proxy reset (Reset mode, or a target it could not reach)
	Up, Down int64 // bytes delivered in each direction
	Dropped  int64 // bytes dropped by Cut
}

// Proxy is a TCP proxy to one target. Its methods are safe for concurrent
// use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // ends at Close: bounds dials to the target
	cancel context.CancelFunc

	mu      sync.Mutex
	mode    Mode               // guarded by mu
	changed chan struct{}      // guarded by mu: closed, and replaced, by each Set
	conns   map[*conn]struct{} // guarded by mu
	closed  bool               // guarded by mu

	accepted, open, resets, up, down, dropped atomic.Int64

	wg sync.WaitGroup
}

// readSize is the most the proxy reads at once from one side.
const readSize = 32 << 10

// queued is how many reads one direction holds before it stops reading
// (latency, black hole): with the kernel's buffers, what a sender may write
// before it blocks.
const queued = 64

// dialTimeout bounds a connection attempt to the target.
const dialTimeout = 5 * time.Second

// New starts a proxy to target (host:port) listening on 127.0.0.1 on a
// port chosen by the system, in pass-through mode.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		changed: make(chan struct{}),
		conns:   make(map[*conn]struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients dial instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Set switches the proxy to m for every connection, current and new.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	var reset []*conn
	if m.Reset {
		for c := range p.conns {
			reset = append(reset, c)
		}
	}
	p.mu.Unlock()
	for _, c := range reset {
		if c.kill(true) {
			p.resets.Add(1)
		}
	}
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// current returns the mode and a channel closed when it next changes.
func (p *Proxy) current() (Mode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.changed
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted: p.accepted.Load(),
		Open:     p.open.Load(),
		Resets:   p.resets.Load(),
		Up:       p.up.Load(),
		Down:     p.down.Load(),
		Dropped:  p.dropped.Load(),
	}
}

// Close stops accepting, closes every connection (plainly, not with a
// reset) and waits until every goroutine of the proxy has returned. It is
// idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		c.kill(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // the listener is closed
		}
		p.accepted.Add(1)
		if m, _ := p.current(); m.Reset {
			resetConn(nc)
			p.resets.Add(1)
			continue
		}
		p.wg.Add(1)
		go p.handle(nc)
	}
}

// handle connects client to the target and forwards between them until
// both directions end or the connection is killed.
func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	target, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		resetConn(client)
		p.resets.Add(1)
		return
	}
	c := &conn{p: p, client: client, target: target, dead: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		target.Close()
		return
	}
	reset := p.mode.Reset // set while we dialed
	p.conns[c] = struct{}{}
	p.open.Add(1)
	p.mu.Unlock()
	if reset && c.kill(true) {
		p.resets.Add(1)
	}

	var pumps sync.WaitGroup
	for _, d := range []Direction{Up, Down} {
		src, dst := client, target
		if d == Down {
			src, dst = target, client
		}
		ch := make(chan chunk, queued)
		pumps.Add(2)
		go func() { defer pumps.Done(); c.read(src, ch) }()
		go func() { defer pumps.Done(); c.write(d, dst, ch) }()
	}
	pumps.Wait()
	c.kill(false)
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.open.Add(-1)
}

// conn is one proxied connection: two sockets and a pump each way.
type conn struct {
	p              *Proxy
	client, target net.Conn

	// ended counts the directions that have delivered their end (a close
	// passed on as a half-close); at two the connection is over.
	ended    atomic.Int32
	killOnce sync.Once
	dead     chan struct{} // closed by kill: every pump stops
}

// chunk is one read from a socket, or the end of its stream.
type chunk struct {
	b   []byte
	at  time.Time // when it was read
	end error     // non-nil: the source ended (io.EOF for a close)
}

// kill ends the connection, with a reset on both sides if reset is set.
// It reports whether this call did it.
func (c *conn) kill(reset bool) bool {
	did := false
	c.killOnce.Do(func() {
		did = true
		close(c.dead)
		if reset {
			resetConn(c.client)
			resetConn(c.target)
			return
		}
		c.client.Close()
		c.target.Close()
	})
	return did
}

// resetConn closes nc so that its peer reads a reset rather than an end of
// stream.
func resetConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
}

// read copies what src sends into ch until src ends or the connection
// dies.
func (c *conn) read(src net.Conn, ch chan<- chunk) {
	buf := make([]byte, readSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ck := chunk{b: append([]byte(nil), buf[:n]...), at: time.Now()}
			select {
			case ch <- ck:
			case <-c.dead:
				return
			}
		}
		if err != nil {
			select {
			case ch <- chunk{at: time.Now(), end: err}:
			case <-c.dead:
			}
			return
		}
	}
}

// write delivers what ch holds to dst according to the mode, in order.
func (c *conn) write(d Direction, dst net.Conn, ch <-chan chunk) {
	var next time.Time // bandwidth: when the next byte may go
	for {
		var ck chunk
		select {
		case ck = <-ch:
		case <-c.dead:
			return
		}
		m, ok := c.hold(d, ck.at)
		if !ok {
			return
		}
		if ck.end != nil {
			if !errors.Is(ck.end, io.EOF) {
				// A reset or an error: the other side learns at once,
				// with a reset of its own.
				c.kill(true)
				return
			}
			// A close: pass it on as a half-close, so that the other
			// direction keeps flowing until its own side closes too.
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			if c.ended.Add(1) == 2 {
				c.kill(false)
			}
			return
		}
		if m.Cut&d != 0 {
			c.p.dropped.Add(int64(len(ck.b)))
			continue
		}
		if !c.send(d, dst, ck.b, m.bandwidth(d), &next) {
			return
		}
	}
}

// hold waits until a chunk read at `at` may go: no black hole, and its
// latency has passed. It returns the mode to apply, or false if the
// connection died meanwhile.
func (c *conn) hold(d Direction, at time.Time) (Mode, bool) {
	for {
		m, changed := c.p.current()
		var t *time.Timer
		var wait <-chan time.Time // nil in a black hole: only a change frees it
		if !m.BlackHole {
			left := time.Until(at.Add(m.latency(d)))
			if left <= 0 {
				return m, true
			}
			t = time.NewTimer(left)
			wait = t.C
		}
		select {
		case <-wait:
			return m, true
		case <-changed: // look again under the new mode
		case <-c.dead:
		}
		if t != nil {
			t.Stop()
		}
		select {
		case <-c.dead:
			return m, false
		default:
		}
	}
}

// send writes b to dst, paced to bw bytes per second if bw > 0.
func (c *conn) send(d Direction, dst net.Conn, b []byte, bw int, next *time.Time) bool {
	count := &c.p.up
	if d == Down {
		count = &c.p.down
	}
	if bw <= 0 {
		if _, err := dst.Write(b); err != nil {
			c.kill(false)
			return false
		}
		count.Add(int64(len(b)))
		return true
	}
	piece := max(bw/100, 1) // at most a hundred writes a second
	for len(b) > 0 {
		n := min(piece, len(b))
		now := time.Now()
		if wait := next.Sub(now); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.dead:
				t.Stop()
				return false
			}
			now = *next
		}
		if _, err := dst.Write(b[:n]); err != nil {
			c.kill(false)
			return false
		}
		count.Add(int64(n))
		*next = now.Add(time.Duration(n) * time.Second / time.Duration(bw))
		b = b[n:]
	}
	return true
}
