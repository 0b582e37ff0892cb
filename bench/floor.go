package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// floorSystem is the best a plain Go program does for a round trip over
// TCP: one connection with TCP_NODELAY, frames of a 4-byte big-endian
// length and the payload (the same prefix as velo's frames), read through
// bufio, written with one Write each, no allocation per frame. Whatever
// velo adds on top of it is the cost of velo.
type floorSystem struct{}

func (floorSystem) Name() string { return floorName }

// floorMaxFrame bounds the frames the floor server accepts, so that a stray
// connection cannot make it allocate gigabytes.
const floorMaxFrame = 16 << 20

// Serve implements System.
func (floorSystem) Serve(ctx context.Context) (Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &floorServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// floorServer echoes every frame it reads back on the same connection.
type floorServer struct {
	ln net.Listener
	wg sync.WaitGroup // the accept loop and one goroutine per connection

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
}

func (s *floorServer) Addr() string { return s.ln.Addr().String() }

func (s *floorServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // listener closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			serveFloorConn(nc)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// serveFloorConn echoes frames until the connection ends. The frame is
// read into a buffer that keeps room for its prefix, so the echo is one
// Write of prefix and payload together.
func serveFloorConn(nc net.Conn) {
	defer nc.Close()
	setNoDelay(nc)
	br := bufio.NewReaderSize(nc, 64<<10)
	buf := make([]byte, 4, 4+512)
	for {
		if _, err := io.ReadFull(br, buf[:4]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(buf[:4]))
		if n > floorMaxFrame {
			return
		}
		if cap(buf) < 4+n {
			buf = append(buf[:0], make([]byte, 4+n)...)
		}
		buf = buf[:4+n]
		if _, err := io.ReadFull(br, buf[4:]); err != nil {
			return
		}
		if _, err := nc.Write(buf); err != nil {
			return
		}
	}
}

func (s *floorServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// Dial implements System.
func (floorSystem) Dial(ctx context.Context, addr string, payload []byte) (Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	setNoDelay(nc)
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), uint32(len(payload)))
	frame = append(frame, payload...)
	return &floorClient{
		nc:    nc,
		br:    bufio.NewReaderSize(nc, 64<<10),
		frame: frame,
		reply: make([]byte, len(payload)),
	}, nil
}

// floorClient sends a prebuilt frame and reads the echo into a reused
// buffer: a round trip is one write and (usually) one read system call.
type floorClient struct {
	nc    net.Conn
	br    *bufio.Reader
	frame []byte // length prefix and payload
	reply []byte
	pre   [4]byte
}

var errShortEcho = errors.New("echo differs in length from the payload")

func (c *floorClient) RoundTrip(context.Context) error {
	if _, err := c.nc.Write(c.frame); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.br, c.pre[:]); err != nil {
		return err
	}
	if n := binary.BigEndian.Uint32(c.pre[:]); int(n) != len(c.reply) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, n, len(c.reply))
	}
	_, err := io.ReadFull(c.br, c.reply)
	return err
}

func (c *floorClient) Close() error { return c.nc.Close() }

// setNoDelay turns Nagle's algorithm off. Go does so by default; saying it
// here keeps the floor's terms explicit.
func setNoDelay(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}
