package http

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/velo-messenger/velo/transport"
	"io"
	"net"
	nethttp "net/http"
	"sync"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

// serverConn is the listener's side of a velo connection as a net.Conn:
// reads come from the request body, writes go to the response and are
// flushed at once.
//
// The ResponseWriter may be used only while the handler runs, so the
// handler waits (wait) until the connection is closed and no Read or
// Write is still inside the request or the response. Close unblocks them
// with deadlines in the past.
type serverConn struct {
	w      nethttp.ResponseWriter
	rc     *nethttp.ResponseController
	body   io.ReadCloser
	local  net.Addr
	remote string
	tls    *tls.ConnectionState // the request's, over HTTPS

	mu      sync.Mutex
	idle    sync.Cond // signalled when active drops to zero
	active  int       // guarded by mu: Reads and Writes in progress
	writing int       // guarded by mu: Writes in progress
	cut     bool      // guarded by mu: Close interrupted a Write
	closed  bool      // guarded by mu
}

func newServerConn(w nethttp.ResponseWriter, rc *nethttp.ResponseController, r *nethttp.Request) *serverConn {
	c := &serverConn{w: w, rc: rc, body: r.Body, remote: r.RemoteAddr, tls: r.TLS}
	c.local, _ = r.Context().Value(nethttp.LocalAddrContextKey).(net.Addr)
	c.idle.L = &c.mu
	return c
}

func (c *serverConn) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.active++
	return true
}

func (c *serverConn) leave() {
	c.mu.Lock()
	c.active--
	if c.active == 0 {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

func (c *serverConn) Read(p []byte) (int, error) {
	if !c.enter() {
		return 0, net.ErrClosed
	}
	defer c.leave()
	return c.body.Read(p)
}

func (c *serverConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.active++
	c.writing++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.writing--
		c.mu.Unlock()
		c.leave()
	}()
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	return n, err
}

// Close marks the connection closed and interrupts a Read or Write in
// progress; the handler returns once they have.
func (c *serverConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cut = c.writing > 0
	busy := c.active > 0
	if busy {
		c.active++ // the handler must not return while we set deadlines
	}
	c.mu.Unlock()
	if busy {
		past := time.Unix(1, 0)
		c.rc.SetReadDeadline(past)
		c.rc.SetWriteDeadline(past)
		c.leave()
	} else {
		c.idle.Broadcast()
	}
	return nil
}

// wait blocks until the connection is closed and idle.
func (c *serverConn) wait() {
	c.mu.Lock()
	for !c.closed || c.active > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

// farewell ends the response with a goaway frame, called by the handler
// once the connection is closed and idle. Ending the response alone does
// not always reach the peer: a reverse proxy may hold the end of the
// response until the peer's request body ends too (httputil.ReverseProxy
// over HTTP/2 does), while the peer waits for the response to end. The
// goaway makes the peer's messenger close its side at once, which ends
// the request. Nothing is written after an interrupted Write: the
// stream may have stopped inside a frame.
func (c *serverConn) farewell() {
	c.mu.Lock()
	cut := c.cut
	c.mu.Unlock()
	if cut {
		return
	}
	c.rc.SetWriteDeadline(time.Now().Add(farewellTimeout))
	var a [64]byte
	if _, err := c.w.Write(wire.AppendGoAway(a[:0], goAway)); err == nil {
		c.rc.Flush()
	}
}

// goAway is the farewell: the peer's calls on the connection fail with
// "peer lost".
var goAway = wire.GoAway{Status: wire.StatusPeerLost, Message: "http: connection closed"}

// farewellTimeout bounds the farewell's write, for a peer that does not
// read.
const farewellTimeout = time.Second

func (c *serverConn) LocalAddr() net.Addr  { return c.local }
func (c *serverConn) RemoteAddr() net.Addr { return strAddr(c.remote) }

func (c *serverConn) SetDeadline(t time.Time) error {
	return errors.Join(c.rc.SetReadDeadline(t), c.rc.SetWriteDeadline(t))
}
func (c *serverConn) SetReadDeadline(t time.Time) error  { return c.rc.SetReadDeadline(t) }
func (c *serverConn) SetWriteDeadline(t time.Time) error { return c.rc.SetWriteDeadline(t) }

// clientConn is the dialer's side as a net.Conn: writes go into the
// request body through a pipe, reads come from the response body.
//
// A goaway frame from the listener ends the stream: reads return io.EOF
// after it, and the request is ended (see serverConn.farewell).
type clientConn struct {
	pw     *io.PipeWriter
	body   io.ReadCloser
	cancel context.CancelFunc // ends the request
	remote string
	tls    *tls.ConnectionState // the response's, over HTTPS
	once   sync.Once
	scan   frameScanner // used by Read only
}

func (c *clientConn) Read(p []byte) (int, error) {
	if c.scan.goneAway {
		c.Close()
		return 0, io.EOF
	}
	n, err := c.body.Read(p)
	if n > 0 {
		if k := c.scan.scan(p[:n]); k >= 0 {
			n = k // hand over the goaway, not what may follow it
		}
	}
	return n, err
}
func (c *clientConn) Write(p []byte) (int, error) { return c.pw.Write(p) }

func (c *clientConn) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.pw.CloseWithError(net.ErrClosed)
		c.body.Close()
	})
	return nil
}

func (c *clientConn) LocalAddr() net.Addr              { return strAddr("") }
func (c *clientConn) RemoteAddr() net.Addr             { return strAddr(c.remote) }
func (c *clientConn) SetDeadline(time.Time) error      { return errNoDeadlines }
func (c *clientConn) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (c *clientConn) SetWriteDeadline(time.Time) error { return errNoDeadlines }

// strAddr is a net.Addr for an address known only as text.
type strAddr string

func (a strAddr) Network() string { return "http" }
func (a strAddr) String() string  { return string(a) }

// frameScanner follows the frame boundaries of a byte stream to notice a
// goaway frame, without copying: it looks at each frame's prefix and type
// and skips the body.
type frameScanner struct {
	head     [wire.HeaderLen]byte
	headN    int  // bytes of head collected for the current frame
	left     int  // body bytes of the current frame not yet seen
	isGoAway bool // the current frame is a goaway
	goneAway bool // a whole goaway frame went by
	lost     bool // the stream is malformed; stop looking
}

// scan looks at the next bytes of the stream. It returns the length of
// p up to the end of a goaway frame if one ends in p, else -1.
func (s *frameScanner) scan(p []byte) int {
	off := 0
	for off < len(p) && !s.lost && !s.goneAway {
		if s.headN < len(s.head) {
			k := copy(s.head[s.headN:], p[off:])
			s.headN += k
			off += k
			if s.headN < len(s.head) {
				break
			}
			s.left = wire.FrameLen(s.head[:wire.PrefixLen]) - (wire.HeaderLen - wire.PrefixLen)
			if s.left < 0 {
				s.lost = true // the frame reader refuses it
				break
			}
			s.isGoAway = wire.Type(s.head[wire.HeaderLen-1]) == wire.TypeGoAway
		}
		k := min(s.left, len(p)-off)
		s.left -= k
		off += k
		if s.left == 0 {
			s.headN = 0
			if s.isGoAway {
				s.goneAway = true
				return off
			}
		}
	}
	return -1
}

// PeerIdentity is what the TLS handshake of the HTTPS connection verified
// of the peer (see transport.CertIdentity), or "".
func (c *serverConn) PeerIdentity() string { return tlsIdentity(c.tls) }

// PeerIdentity is what the TLS handshake verified of the server, or "".
func (c *clientConn) PeerIdentity() string { return tlsIdentity(c.tls) }

func tlsIdentity(st *tls.ConnectionState) string {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	return transport.CertIdentity(st.PeerCertificates[0])
}
