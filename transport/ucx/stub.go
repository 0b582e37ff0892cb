//go:build !ucx || !cgo

package ucx

import (
	"context"

	"github.com/velo-messenger/velo/transport"
)

// Available reports whether this binary was built with UCX.
const Available = false

// Transport is the UCX transport; in a binary built without UCX it cannot
// be made (New returns ErrUnavailable), and its methods return that error.
type Transport struct{}

// New returns ErrUnavailable: this binary was built without UCX.
func New(o Options) (*Transport, error) { return nil, ErrUnavailable }

// Name implements transport.Transport.
func (*Transport) Name() string { return Name }

// Listen implements transport.Transport.
func (*Transport) Listen(context.Context, transport.Binder) (string, error) {
	return "", ErrUnavailable
}

// Dial implements transport.Transport.
func (*Transport) Dial(context.Context, string, transport.Binder) (transport.Conn, error) {
	return nil, ErrUnavailable
}

// MaxFrame implements transport.Transport.
func (*Transport) MaxFrame() int { return DefaultMaxFrame }

// Close implements transport.Transport.
func (*Transport) Close() error { return nil }
