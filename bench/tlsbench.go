package main

import (
	"crypto/tls"
	"os"
	"sync"

	"github.com/velo-messenger/velo/internal/testcerts"
)

// The TLS systems (velo over tcp+tls, grpc-go+tls) share one certificate
// authority and one certificate for the loopback addresses, made in
// memory by the first process that needs them (the bench) and passed to
// its server children in tlsEnv, which they inherit: both ends present
// the certificate and require the other's (mutual TLS), as instances of
// one service would.

const tlsEnv = "VELO_BENCH_TLS"

var benchTLS = sync.OnceValues(func() (*tls.Config, error) {
	if blocks := os.Getenv(tlsEnv); blocks != "" {
		return testcerts.DecodeMutual(blocks)
	}
	ca, err := testcerts.New("velo bench CA")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Make(testcerts.Leaf{URI: "spiffe://velo.bench/bench"})
	if err != nil {
		return nil, err
	}
	blocks, err := testcerts.EncodeMutual(ca, cert)
	if err != nil {
		return nil, err
	}
	os.Setenv(tlsEnv, blocks) // for the server children started from now on
	return testcerts.Mutual(ca, cert), nil
})
