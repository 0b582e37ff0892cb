package velo

import (
	"crypto/tls"
	"errors"
	"strings"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
	"github.com/velo-messenger/velo/transport"
)

// Identity and authorization. A connection whose transport authenticates
// the peer (transport.Authenticated: mutual TLS, a Unix socket's
// credentials) gives every request on it the peer's identity, in
// Context.Identity and in the identity Options.Authorize sees. The
// handshake binds the instance id a peer claims to the identity it
// connected with: while an instance is connected under one identity, a
// connection that claims its id under another is refused.

// IsSystemHandler reports whether name is one of velo's own handlers
// (names starting with '_'), which an Options.Authorize sees too: the
// handler list, ping, the handler-change messages and the events
// protocol. The handshake (_hello) is never authorized: it is how a
// connection says who it is.
func IsSystemHandler(name string) bool { return system.IsReserved(name) }

// peerIdentity is the identity the transport authenticated for c, or "".
func peerIdentity(c transport.Conn) string {
	if a, ok := c.(transport.Authenticated); ok {
		return a.PeerIdentity()
	}
	return ""
}

// checkIdentity refuses a connection that claims instance id under
// another identity than the connections to it already open.
func (m *Messenger) checkIdentity(s *session, id peer.ID) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for o := range m.sessions {
		if o == s || !o.ready() || o.closing.Load() || o.peer.ID != id || o.identity == s.identity {
			continue
		}
		m.warn(m.peerLog, "velo: handshake refused: instance connected under another identity",
			"peer", id.Short(), "identity", s.identity, "connected_as", o.identity, "addr", s.conn.RemoteAddr())
		return newError(CodePermissionDenied, system.Hello, nil, "instance %s is connected under identity %q; this connection is %q",
			id.Short(), o.identity, s.identity)
	}
	return nil
}

// authorize asks Options.Authorize whether the peer of s may call
// req.Handler. It runs on the receive path, before the request takes a
// mailbox slot; a refusal is answered, counted and logged (rate-limited).
func (s *session) authorize(req *wire.Request) error {
	auth := s.m.opts.Authorize
	if auth == nil {
		return nil
	}
	err := auth(s.m.handlerCtx, s.identity, req.Handler)
	if err == nil {
		return nil
	}
	s.m.denied.Add(1)
	s.m.warn(s.m.authLog, "velo: request refused by Authorize", "handler", req.Handler, "identity", s.identity,
		"sender", s.peer.ID.Short(), "err", err)
	var ve *Error
	if errors.As(err, &ve) && (ve.Code == CodeUnauthenticated || ve.Code == CodePermissionDenied) {
		return &Error{Code: ve.Code, Handler: req.Handler, Message: err.Error()}
	}
	if s.identity == "" {
		return newError(CodeUnauthenticated, req.Handler, err, "%v", err)
	}
	return newError(CodePermissionDenied, req.Handler, err, "%v", err)
}

// Denied counts the requests Options.Authorize refused.
func (m *Messenger) Denied() uint64 { return m.denied.Load() }

// logBrokenHandshake logs, rate-limited, an accepted connection that
// ended before its hello because its TLS handshake failed (a plaintext
// client, a certificate the config refuses): it is the only trace such a
// peer leaves.
func (m *Messenger) logBrokenHandshake(s *session, reason error) {
	if tlsFailure(reason) {
		m.warn(m.peerLog, "velo: TLS handshake failed", "addr", s.conn.RemoteAddr(), "transport", s.tname, "err", reason)
	}
}

// tlsFailure reports whether err comes from a TLS handshake: crypto/tls
// types some of its errors, and words the others "tls: ...".
func tlsFailure(err error) bool {
	var re tls.RecordHeaderError
	var ae tls.AlertError
	var ce *tls.CertificateVerificationError
	return errors.As(err, &re) || errors.As(err, &ae) || errors.As(err, &ce) ||
		err != nil && strings.Contains(err.Error(), "tls: ")
}
