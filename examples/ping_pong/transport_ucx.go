//go:build ucx

package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/ucx"
)

// ucxTLSEnv carries -ucx-tls to the server child.
const ucxTLSEnv = "VELO_PING_PONG_UCX_TLS"

var ucxTLS = flag.String("ucx-tls", ucx.DefaultTransports, "with -transport ucx: UCX's transports, "+ucx.DefaultTransports+" or "+ucx.SharedMemory+" (shared memory)")

// Built with -tags ucx only (and libucx-dev installed), so that the
// default build needs no C library.
func init() {
	transports["ucx"] = func(*tls.Config) transport.Transport {
		tr, err := ucx.New(ucx.Options{Transports: os.Getenv(ucxTLSEnv)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "ping_pong:", err)
			os.Exit(1)
		}
		return tr
	}
	prepare["ucx"] = func() (func(), error) {
		if os.Getenv(ucxTLSEnv) == "" {
			if err := os.Setenv(ucxTLSEnv, *ucxTLS); err != nil {
				return nil, err
			}
		}
		return func() {}, nil
	}
}
