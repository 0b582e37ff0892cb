package main

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// grpc-go unary calls whose messages are raw bytes: a service registered
// by hand (no protoc) and a codec that passes []byte through, so that the
// comparison is about the RPC machinery, not about protobuf.

// rawCodec is an encoding.Codec for []byte messages.
type rawCodec struct{}

func (rawCodec) Name() string { return "velo-bench-raw" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	// grpc hands over a buffer of its own (it materializes the message),
	// so keeping it is safe.
	*p = data
	return nil
}

const grpcMethod = "/velobench.Echo/Echo"

var grpcEchoDesc = grpc.ServiceDesc{
	ServiceName: "velobench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
	Streams: []grpc.StreamDesc{grpcItemsStream},
}

// grpcMaxMsg lifts gRPC's 4 MiB message limit above the largest payload.
const grpcMaxMsg = 1 << 30 // -mode large echoes up to 1 GiB

func serveGRPC(ctx context.Context, _ env) (Server, error) { return serveGRPCWith(ctx) }

// serveGRPCTLS is serveGRPC under mutual TLS, with the bench's
// certificate (tlsbench.go).
func serveGRPCTLS(ctx context.Context, _ env) (Server, error) {
	c, err := benchTLS()
	if err != nil {
		return nil, err
	}
	return serveGRPCWith(ctx, grpc.Creds(credentials.NewTLS(c)))
}

func serveGRPCWith(ctx context.Context, opts ...grpc.ServerOption) (Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(append(opts, grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(grpcMaxMsg), grpc.MaxSendMsgSize(grpcMaxMsg))...)
	srv.RegisterService(&grpcEchoDesc, struct{}{})
	s := &grpcServer{srv: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ln) }()
	return s, nil
}

type grpcServer struct {
	srv  *grpc.Server
	addr string
	done chan error // Serve's result
}

func (s *grpcServer) Addr() string { return s.addr }

func (s *grpcServer) Close() error {
	s.srv.Stop()
	return <-s.done
}

func dialGRPC(ctx context.Context, _ env, addr string) (Client, error) {
	return dialGRPCWith(ctx, addr, insecure.NewCredentials())
}

// dialGRPCTLS is dialGRPC under mutual TLS.
func dialGRPCTLS(ctx context.Context, _ env, addr string) (Client, error) {
	c, err := benchTLS()
	if err != nil {
		return nil, err
	}
	c = c.Clone()
	c.ServerName = "127.0.0.1"
	return dialGRPCWith(ctx, addr, credentials.NewTLS(c))
}

func dialGRPCWith(ctx context.Context, addr string, creds credentials.TransportCredentials) (Client, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(grpcMaxMsg), grpc.MaxCallSendMsgSize(grpcMaxMsg)))
	if err != nil {
		return nil, err
	}
	c := &grpcClient{cc: cc}
	if err := c.RoundTrip(ctx, nil); err != nil { // connects
		cc.Close()
		return nil, fmt.Errorf("first call: %w", err)
	}
	return c, nil
}

type grpcClient struct{ cc *grpc.ClientConn }

func (c *grpcClient) RoundTrip(ctx context.Context, payload []byte) error {
	var reply []byte
	if err := c.cc.Invoke(ctx, grpcMethod, payload, &reply); err != nil {
		return err
	}
	if len(reply) != len(payload) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(reply), len(payload))
	}
	return nil
}

func (c *grpcClient) Close() error { return c.cc.Close() }
