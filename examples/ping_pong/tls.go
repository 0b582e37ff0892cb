package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// -tls: the parent makes a certificate authority and one certificate for
// 127.0.0.1 in memory when it starts, and hands them to the server child
// in its environment (tlsEnv, PEM blocks); nothing is written to disk.
// Both processes present the certificate and require the other's (mutual
// TLS), as instances of one service would.

const tlsEnv = "VELO_PING_PONG_TLS"

// newTLS makes the CA and the certificate, and returns the config and what
// to put in the child's environment.
func newTLS() (*tls.Config, string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ping_pong CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, "", err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ping_pong"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	blocks := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	c, err := parseTLS(blocks)
	return c, blocks, err
}

// childTLS reads the config the parent put in the environment.
func childTLS() (*tls.Config, error) {
	blocks := os.Getenv(tlsEnv)
	if blocks == "" {
		return nil, errors.New("-tls: no certificate in $" + tlsEnv)
	}
	return parseTLS(blocks)
}

// parseTLS builds the mutual-TLS config from the CA certificate, the
// certificate and its key, in that order.
func parseTLS(blocks string) (*tls.Config, error) {
	caPEM, rest, ok := strings.Cut(blocks, "-----END CERTIFICATE-----\n")
	if !ok {
		return nil, fmt.Errorf("-tls: no CA certificate")
	}
	caPEM += "-----END CERTIFICATE-----\n"
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, fmt.Errorf("-tls: bad CA certificate")
	}
	cert, err := tls.X509KeyPair([]byte(rest), []byte(rest))
	if err != nil {
		return nil, fmt.Errorf("-tls: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}
