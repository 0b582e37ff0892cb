package grpc

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/grpc/internal/velopb"
)

// chunkStream is what the client and server streams of Connect share.
type chunkStream interface {
	SendMsg(m any) error
	RecvMsg(m any) error
}

// streamConn is one Connect stream as a net.Conn, for transport/stream:
// Write sends the bytes as chunks of at most maxChunk, Read hands out the
// chunks received.
//
// Read is called by the connection's receive loop only, and Write by one
// writer at a time (stream.Conn guarantees both), which is what gRPC
// allows: one sender and one receiver at once.
//
// On the server side the stream ends when the Connect handler returns,
// which it does once the connection is closed; a Recv or Send still
// inside gRPC then fails, as gRPC promises for a finished stream.
type streamConn struct {
	st       chunkStream
	maxChunk int
	end      func() // ends the stream (client side); nil on the server side
	local    net.Addr
	remote   net.Addr
	identity string // what the stream's TLS handshake verified of the peer

	in  velopb.Chunk // used by Read only
	buf []byte       // used by Read only: what is left of in.Data
	out velopb.Chunk // used by Write only

	closed atomic.Bool
}

func newStreamConn(st chunkStream, maxChunk int, end func(), local, remote net.Addr) *streamConn {
	return &streamConn{st: st, maxChunk: maxChunk, end: end, local: local, remote: remote}
}

func (c *streamConn) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		if c.closed.Load() {
			return 0, errClosedStream
		}
		c.in.Reset()
		if err := c.st.RecvMsg(&c.in); err != nil {
			return 0, err // io.EOF when the peer ended the stream cleanly
		}
		c.buf = c.in.Data
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.closed.Load() {
			return n, errClosedStream
		}
		k := min(len(p)-n, c.maxChunk)
		c.out.Data = p[n : n+k]
		err := c.st.SendMsg(&c.out)
		c.out.Data = nil
		if err != nil {
			if err == io.EOF {
				// The server ended the stream; the reason comes with the
				// next Recv.
				err = io.ErrClosedPipe
			}
			return n, err
		}
		n += k
	}
	return n, nil
}

// Close ends the stream on the client side; on the server side the
// Connect handler ends it by returning.
func (c *streamConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.end != nil {
		c.end()
	}
	return nil
}

func (c *streamConn) LocalAddr() net.Addr              { return c.local }
func (c *streamConn) RemoteAddr() net.Addr             { return c.remote }
func (c *streamConn) SetDeadline(time.Time) error      { return errNoDeadlines }
func (c *streamConn) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (c *streamConn) SetWriteDeadline(time.Time) error { return errNoDeadlines }

// PeerIdentity is what the TLS handshake under the stream verified of the
// peer (transport.CertIdentity), or "" without TLS credentials.
func (c *streamConn) PeerIdentity() string { return c.identity }

// tlsIdentity reads the verified peer of a stream's ctx.
func tlsIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	return transport.CertIdentity(info.State.PeerCertificates[0])
}

func localAddr(ctx context.Context) net.Addr {
	if p, ok := peer.FromContext(ctx); ok {
		return p.LocalAddr
	}
	return nil
}

func remoteAddr(ctx context.Context) net.Addr {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr
	}
	return nil
}

// strAddr is a net.Addr for an address known only as text.
type strAddr string

func (a strAddr) Network() string { return "grpc" }
func (a strAddr) String() string  { return string(a) }
