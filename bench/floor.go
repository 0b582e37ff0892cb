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
	"unsafe"

	"github.com/velo-messenger/velo/internal/rawio"
)

// The floor is the best a plain Go program does over TCP: one connection
// with TCP_NODELAY, frames of a 4-byte big-endian length and the payload
// (the same prefix as velo's frames), read through bufio, written with one
// Write each, no allocation per frame. Whatever velo adds on top of it is
// the cost of velo.
//
// A request-response round trip is a frame echoed back. With n calls in
// flight the floor opens n connections, each doing round trips one at a
// time (it has no multiplexing: that is what RPC systems add). For the
// stream mode two flags in the length word mark a frame as one-way
// (counted, not echoed) or as the barrier that asks for the count.

// floorMaxFrame bounds the frames the floor server accepts, so that a stray
// connection cannot make it allocate gigabytes.
const floorMaxFrame = 1 << 30 // -mode large echoes up to 1 GiB through it

const (
	floorOneWay  = 1 << 31 // in the length word: count the frame, do not echo it
	floorBarrier = 1 << 30 // in the length word: answer with the count of one-way frames
	floorLenMask = floorBarrier - 1
)

func serveFloor(ctx context.Context, _ env) (Server, error) {
	return newFloorServer(ctx, false)
}

// serveFloorRaw is the floor with raw socket calls (rawio.Wrap), the I/O
// path of velo's TCP transport.
func serveFloorRaw(ctx context.Context, _ env) (Server, error) {
	return newFloorServer(ctx, true)
}

func newFloorServer(ctx context.Context, raw bool) (Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &floorServer{ln: ln, raw: raw, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// floorServer echoes every frame it reads back on the same connection.
type floorServer struct {
	ln  net.Listener
	raw bool           // read and write with rawio
	wg  sync.WaitGroup // the accept loop and one goroutine per connection

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
			serveFloorConn(nc, s.raw)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// serveFloorConn echoes frames until the connection ends. The frame is
// read into a buffer that keeps room for its prefix, so the echo is one
// Write of prefix and payload together.
func serveFloorConn(nc net.Conn, raw bool) {
	defer nc.Close()
	setNoDelay(nc)
	if raw {
		nc = rawio.Wrap(nc)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	buf := make([]byte, 4, 4+512)
	var count uint64 // one-way frames since the last barrier
	for {
		if _, err := io.ReadFull(br, buf[:4]); err != nil {
			return
		}
		word := binary.BigEndian.Uint32(buf[:4])
		if word&floorBarrier != 0 {
			var reply [12]byte
			binary.BigEndian.PutUint32(reply[:4], 8)
			binary.BigEndian.PutUint64(reply[4:], count)
			count = 0
			if _, err := nc.Write(reply[:]); err != nil {
				return
			}
			continue
		}
		n := int(word & floorLenMask)
		if n > floorMaxFrame {
			return
		}
		if cap(buf) < 4+n {
			grown := make([]byte, 4+n)
			copy(grown, buf[:4]) // the length word, echoed with the payload
			buf = grown
		}
		buf = buf[:4+n]
		if _, err := io.ReadFull(br, buf[4:]); err != nil {
			return
		}
		if word&floorOneWay != 0 {
			count++
			continue
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

func dialFloor(ctx context.Context, _ env, addr string) (Client, error) {
	return dialFloorConn(ctx, addr, false)
}

func dialFloorRaw(ctx context.Context, _ env, addr string) (Client, error) {
	return dialFloorConn(ctx, addr, true)
}

func dialFloorConn(ctx context.Context, addr string, raw bool) (Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	setNoDelay(nc)
	if raw {
		nc = rawio.Wrap(nc)
	}
	return &floorClient{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

// floorClient sends a prebuilt frame and reads the echo into a reused
// buffer: a round trip is one write and (usually) one read system call.
// It is not safe for concurrent use (the floor is PerWorker).
type floorClient struct {
	nc    net.Conn
	br    *bufio.Reader
	frame []byte // length prefix and payload, for the payload last seen
	of    *byte  // that payload's first byte
	reply []byte
	pre   [12]byte
}

var errShortEcho = errors.New("echo differs in length from the payload")

// frameFor returns the frame carrying payload with the given flags,
// building it only when the payload changed since the last call.
func (c *floorClient) frameFor(payload []byte, flags uint32) []byte {
	if c.of != unsafe.SliceData(payload) || len(c.frame) != 4+len(payload) {
		c.frame = append(c.frame[:0], 0, 0, 0, 0)
		c.frame = append(c.frame, payload...)
		c.of = unsafe.SliceData(payload)
		c.reply = make([]byte, len(payload))
	}
	binary.BigEndian.PutUint32(c.frame, uint32(len(payload))|flags)
	return c.frame
}

func (c *floorClient) RoundTrip(_ context.Context, payload []byte) error {
	if _, err := c.nc.Write(c.frameFor(payload, 0)); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.br, c.pre[:4]); err != nil {
		return err
	}
	if n := binary.BigEndian.Uint32(c.pre[:4]); int(n) != len(c.reply) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, n, len(c.reply))
	}
	_, err := io.ReadFull(c.br, c.reply)
	return err
}

// Stream writes n one-way frames, one Write each, then the barrier, and
// reads the count of frames the server received.
func (c *floorClient) Stream(_ context.Context, payload []byte, n int) error {
	frame := c.frameFor(payload, floorOneWay)
	for range n {
		if _, err := c.nc.Write(frame); err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint32(c.pre[:4], floorBarrier)
	if _, err := c.nc.Write(c.pre[:4]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.br, c.pre[:12]); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint64(c.pre[4:12]); got != uint64(n) {
		return fmt.Errorf("server counted %d one-way frames, sent %d", got, n)
	}
	return nil
}

func (c *floorClient) Close() error { return c.nc.Close() }

// setNoDelay turns Nagle's algorithm off. Go does so by default; saying it
// here keeps the floor's terms explicit.
func setNoDelay(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}
