// Package testcerts makes certificate authorities and certificates in
// memory for the TLS tests, the bench and the examples, so that no private
// key is ever checked in. New and Make return errors; NewCA and Issue fail
// a test instead.
package testcerts

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
	"net/url"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	Pool *x509.CertPool // holding Cert alone
	key  *ecdsa.PrivateKey
}

// NewCA is New for a test: it fails t on error.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Issue is Make for a test: it fails t on error.
func (ca *CA) Issue(t testing.TB, l Leaf) tls.Certificate {
	t.Helper()
	c, err := ca.Make(l)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// New makes a self-signed CA named name, valid from an hour ago for a day.
func New(name string) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testcerts: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Pool: pool, key: key}, nil
}

// Leaf says what a certificate names and how long it is valid.
type Leaf struct {
	URI string   // a URI SAN (spiffe://...), if not empty
	DNS []string // DNS SANs besides "localhost"
	CN  string   // the subject's common name
	// NotBefore and NotAfter default to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
}

// Make makes a certificate for l, signed by ca, good for servers and
// clients alike, for the loopback addresses 127.0.0.1 and ::1 and the name
// localhost (so that a dialer verifying the address it dialed accepts it).
func (ca *CA) Make(l Leaf) (tls.Certificate, error) {
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	sn, err := serial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: l.CN},
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     append([]string{"localhost"}, l.DNS...),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if l.URI != "" {
		u, err := url.Parse(l.URI)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("testcerts: URI %q: %w", l.URI, err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcerts: leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Mutual returns the one config an instance uses both ways under mutual
// TLS: it presents cert, and verifies peers (servers it dials and clients
// that dial it) against trust.
func Mutual(trust *CA, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      trust.Pool,
		ClientCAs:    trust.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// EncodeMutual writes what Mutual(ca, cert) needs as PEM blocks (the CA's
// certificate, cert's chain, its key), to hand to another process.
func EncodeMutual(ca *CA, cert tls.Certificate) (string, error) {
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	for _, der := range cert.Certificate {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: key})
	return b.String(), nil
}

// DecodeMutual reads what EncodeMutual wrote and returns the Mutual config.
func DecodeMutual(s string) (*tls.Config, error) {
	caBlock, rest := pem.Decode([]byte(s))
	if caBlock == nil || caBlock.Type != "CERTIFICATE" {
		return nil, errors.New("testcerts: no CA certificate")
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(rest, rest)
	if err != nil {
		return nil, fmt.Errorf("testcerts: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return Mutual(&CA{Cert: ca, Pool: pool}, cert), nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
}
