package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// CheckTLS reports a TLS config that a transport named scope refuses: one
// that allows a version below TLS 1.2.
func CheckTLS(scope string, c *tls.Config) error {
	if c != nil && c.MinVersion != 0 && c.MinVersion < tls.VersionTLS12 {
		return fmt.Errorf("velo: %s: TLS MinVersion %s is below TLS 1.2", scope, tls.VersionName(c.MinVersion))
	}
	return nil
}

// WithTLSDefaults returns a copy of c with MinVersion TLS 1.2 if it is
// unset, or nil for nil. The copy keeps c's callbacks (GetCertificate,
// GetConfigForClient), so certificates rotate through them.
func WithTLSDefaults(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	c = c.Clone()
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// ClientTLS runs the client side of a TLS handshake on nc, dialed to
// addr, within ctx; ServerName defaults to addr's host. On failure nc is
// closed.
func ClientTLS(ctx context.Context, nc net.Conn, c *tls.Config, addr string) (net.Conn, error) {
	if c.ServerName == "" {
		c = c.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		} else {
			c.ServerName = addr
		}
	}
	tc := tls.Client(nc, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}
