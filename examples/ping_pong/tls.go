package main

import (
	"crypto/tls"
	"errors"
	"os"

	"github.com/velo-messenger/velo/internal/testcerts"
)

// -tls: the parent makes a certificate authority and one certificate for
// the loopback addresses in memory when it starts (internal/testcerts),
// and hands them to the server child in its environment (tlsEnv, PEM
// blocks); nothing is written to disk. Both processes present the
// certificate and require the other's (mutual TLS), as instances of one
// service would. A real deployment loads its certificates from its CA
// instead; docs/security.md shows the config.

const tlsEnv = "VELO_PING_PONG_TLS"

// newTLS makes the CA and the certificate, and returns the config and what
// to put in the child's environment.
func newTLS() (*tls.Config, string, error) {
	ca, err := testcerts.New("ping_pong CA")
	if err != nil {
		return nil, "", err
	}
	cert, err := ca.Make(testcerts.Leaf{URI: "spiffe://ping-pong.example/ping_pong"})
	if err != nil {
		return nil, "", err
	}
	blocks, err := testcerts.EncodeMutual(ca, cert)
	if err != nil {
		return nil, "", err
	}
	return testcerts.Mutual(ca, cert), blocks, nil
}

// childTLS reads the config the parent put in the environment.
func childTLS() (*tls.Config, error) {
	blocks := os.Getenv(tlsEnv)
	if blocks == "" {
		return nil, errors.New("-tls: no certificate in $" + tlsEnv)
	}
	return testcerts.DecodeMutual(blocks)
}
