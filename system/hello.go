package system

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/internal/mpcheck"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
)

// HelloMsg is the payload of _hello, in both directions.
type HelloMsg struct {
	Info     peer.Info `msgpack:"info"`
	Handlers []string  `msgpack:"handlers"`
	MaxFrame int       `msgpack:"max_frame"` // largest frame the sender reads
	Protocol int       `msgpack:"protocol"`  // wire.Version of the sender
	// MaxPayload is the largest request or response the sender takes in
	// chunks (wire.TypeChunk); zero: it takes none, only whole frames.
	MaxPayload int `msgpack:"max_payload,omitempty"`
}

// Limits of a hello. A hello over any of them is refused (ErrHelloLimits),
// and an instance never sends one: it refuses to register more handlers,
// and to listen on more transports, than its hello could list. With them,
// the largest hello (about 180 KiB) fits in wire.MaxHelloFrame, the frame
// size a connection accepts before its handshake, and what a session keeps
// of its peer's hello is bounded too (under 200 KiB).
const (
	// MaxHelloHandlers is the most handler names a hello lists: the most
	// user handlers an instance may register.
	MaxHelloHandlers = 4096
	// MaxHelloHandlerBytes bounds the sum of the lengths of those names;
	// each is 1..wire.MaxHandlerName bytes.
	MaxHelloHandlerBytes = 128 << 10
	// MaxHelloAddresses is the most transport addresses a hello lists:
	// the most transports an instance may listen on.
	MaxHelloAddresses = 32
	// MaxTransportName bounds the length of a transport's name (an
	// address's key), 1..MaxTransportName bytes.
	MaxTransportName = 64
	// MaxAddress bounds the length of an address.
	MaxAddress = 1024
)

// ErrHelloLimits is wrapped by the errors of CheckLimits.
var ErrHelloLimits = errors.New("system: hello over its limits")

// ErrProtocol is wrapped by the error of CheckProtocol.
var ErrProtocol = errors.New("system: unsupported protocol version")

// CheckProtocol reports whether the sender of h speaks this instance's
// protocol version (wire.Version); there is only one so far, so a hello
// of any other version is refused rather than misread.
func (h *HelloMsg) CheckProtocol() error {
	if h.Protocol != wire.Version {
		return fmt.Errorf("%w: peer speaks version %d, this instance %d", ErrProtocol, h.Protocol, wire.Version)
	}
	return nil
}

// Encode returns the MessagePack form of h.
func (h *HelloMsg) Encode() ([]byte, error) { return msgpack.Marshal(h) }

// DecodeHello reads a HelloMsg and checks its limits. Decoding is bounded
// before the limits are checked (mpcheck.Unmarshal): a hello over them costs the
// receiver a few times its size at most, and only while it is refused.
func DecodeHello(b []byte) (HelloMsg, error) {
	var h HelloMsg
	if err := mpcheck.Unmarshal(b, &h); err != nil {
		return HelloMsg{}, err
	}
	if err := h.CheckLimits(); err != nil {
		return HelloMsg{}, err
	}
	return h, nil
}

// CheckLimits reports the first limit h is over. The handlers travel in
// h.Handlers only: a hello whose Info lists handlers too is refused, so
// that a peer cannot make the receiver keep two lists.
func (h *HelloMsg) CheckLimits() error {
	if err := CheckNames(h.Handlers); err != nil {
		return err
	}
	if len(h.Info.Handlers) > 0 {
		return fmt.Errorf("%w: handlers listed in the info, not in the hello", ErrHelloLimits)
	}
	if len(h.Info.Service) > peer.MaxServiceName {
		return fmt.Errorf("%w: service name of %d bytes, the most is %d", ErrHelloLimits, len(h.Info.Service), peer.MaxServiceName)
	}
	return CheckAddresses(h.Info.Addresses)
}

// CheckNames reports whether names may be an instance's list of
// handlers, in a hello or a HandlersChanged message.
func CheckNames(names []string) error {
	if err := CheckHandlers(len(names), 0); err != nil {
		return err
	}
	total := 0
	for i, name := range names {
		if name == "" || len(name) > wire.MaxHandlerName {
			return fmt.Errorf("%w: handler %d has a name of %d bytes, want 1..%d", ErrHelloLimits, i, len(name), wire.MaxHandlerName)
		}
		total += len(name)
	}
	return CheckHandlers(0, total)
}

// CheckHandlers reports whether a hello may list n handlers whose names
// take nameBytes bytes in all.
func CheckHandlers(n, nameBytes int) error {
	if n > MaxHelloHandlers {
		return fmt.Errorf("%w: %d handlers, the most is %d", ErrHelloLimits, n, MaxHelloHandlers)
	}
	if nameBytes > MaxHelloHandlerBytes {
		return fmt.Errorf("%w: handler names of %d bytes in all, the most is %d", ErrHelloLimits, nameBytes, MaxHelloHandlerBytes)
	}
	return nil
}

// CheckAddresses reports whether a hello may list addrs.
func CheckAddresses(addrs map[string]string) error {
	if len(addrs) > MaxHelloAddresses {
		return fmt.Errorf("%w: %d addresses, the most is %d", ErrHelloLimits, len(addrs), MaxHelloAddresses)
	}
	for name, addr := range addrs {
		if name == "" || len(name) > MaxTransportName {
			return fmt.Errorf("%w: transport name of %d bytes, want 1..%d", ErrHelloLimits, len(name), MaxTransportName)
		}
		if len(addr) > MaxAddress {
			return fmt.Errorf("%w: %s address of %d bytes, the most is %d", ErrHelloLimits, name, len(addr), MaxAddress)
		}
	}
	return nil
}
