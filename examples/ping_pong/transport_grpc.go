//go:build grpc

package main

import (
	"crypto/tls"

	"github.com/velo-messenger/velo/transport"
	velogrpc "github.com/velo-messenger/velo/transport/grpc"
)

// Built with -tags grpc only, so that the default build links no gRPC.
func init() {
	transports["grpc"] = func(c *tls.Config) transport.Transport { return velogrpc.New(velogrpc.Options{TLS: c}) }
}
