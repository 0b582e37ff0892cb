package main

import (
	"context"
	"fmt"
	"net"
	"net/rpc"
	"sync"
)

// net/rpc, the standard library's RPC, over TCP with its default gob
// codec: one connection, calls multiplexed on it by sequence number.

// EchoService is the net/rpc receiver; net/rpc needs it exported.
type EchoService struct{}

// Echo returns its argument.
func (EchoService) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

const netRPCMethod = "Echo.Echo"

func serveNetRPC(ctx context.Context, _ env) (Server, error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", EchoService{}); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &netRPCServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
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
				srv.ServeConn(nc) // returns when the connection ends
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
			}()
		}
	}()
	return s, nil
}

type netRPCServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
}

func (s *netRPCServer) Addr() string { return s.ln.Addr().String() }

func (s *netRPCServer) Close() error {
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

func dialNetRPC(ctx context.Context, _ env, addr string) (Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &netRPCClient{c: rpc.NewClient(nc)}, nil
}

type netRPCClient struct{ c *rpc.Client }

func (c *netRPCClient) RoundTrip(_ context.Context, payload []byte) error {
	var reply []byte
	if err := c.c.Call(netRPCMethod, payload, &reply); err != nil {
		return err
	}
	if len(reply) != len(payload) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(reply), len(payload))
	}
	return nil
}

func (c *netRPCClient) Close() error { return c.c.Close() }
