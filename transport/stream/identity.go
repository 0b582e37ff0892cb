package stream

import (
	"crypto/tls"
	"net"

	"github.com/velo-messenger/velo/transport"
)

var _ transport.Authenticated = (*Conn)(nil)

// PeerIdentity implements transport.Authenticated: on a TLS connection
// whose handshake verified the peer's chain, the identity of its leaf
// certificate (transport.CertIdentity); on a Unix socket, "unix:uid=N"
// from the kernel's credentials of the peer (Linux); else "".
func (c *Conn) PeerIdentity() string {
	switch nc := c.orig.(type) {
	case *tls.Conn:
		st := nc.ConnectionState()
		if !st.HandshakeComplete || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
			return ""
		}
		return transport.CertIdentity(st.PeerCertificates[0])
	case *net.UnixConn:
		return unixIdentity(nc)
	case transport.Authenticated: // a transport's own connection (http)
		return nc.PeerIdentity()
	}
	return ""
}
