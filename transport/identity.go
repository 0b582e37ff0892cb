package transport

import "crypto/x509"

// Authenticated is implemented by connections that know who the peer is:
// one whose TLS handshake verified the peer's certificate chain (mutual
// TLS on the accepting side), or a Unix socket, whose kernel says which
// user the peer process runs as.
type Authenticated interface {
	// PeerIdentity returns the peer's authenticated identity, or "" if
	// the connection has none. The messenger calls it once the first
	// frame has arrived, so a TLS handshake is complete by then.
	PeerIdentity() string
}

// CertIdentity is the identity a verified certificate gives its holder:
// its first URI SAN (a SPIFFE ID, spiffe://trust-domain/path, or any
// URI), else its first DNS SAN, else its subject's common name; "" if it
// has none of them.
func CertIdentity(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}
