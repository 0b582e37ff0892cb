// Package peer holds the leaf types that name a velo instance and say how to
// reach it. It imports nothing from the rest of velo.
package peer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ID names one messenger instance. It is 128 random bits, drawn when the
// instance starts, so two instances never share one in practice. The zero ID
// means "no instance".
type ID [16]byte

// NewID returns a fresh random ID.
func NewID() ID {
	var id ID
	// crypto/rand.Read never fails on supported platforms (Go 1.24+ crashes
	// the program instead of returning an error).
	rand.Read(id[:])
	return id
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// String returns the 32-character lowercase hexadecimal form of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hexadecimal characters, for logs.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ErrBadID is returned by Parse for text that is not an ID.
var ErrBadID = errors.New("peer: malformed instance id")

// Parse reads the form written by String. Upper-case hexadecimal and the
// dashed UUID layout (8-4-4-4-12) are accepted too.
func Parse(s string) (ID, error) {
	var id ID
	t := s
	if len(t) == 36 && t[8] == '-' && t[13] == '-' && t[18] == '-' && t[23] == '-' {
		t = strings.ReplaceAll(t, "-", "")
	}
	if len(t) != 32 {
		return id, fmt.Errorf("%w: %q: want 32 hexadecimal digits", ErrBadID, s)
	}
	if _, err := hex.Decode(id[:], []byte(t)); err != nil {
		return ID{}, fmt.Errorf("%w: %q: %v", ErrBadID, s, err)
	}
	return id, nil
}

// Info says who an instance is and where its transports listen.
type Info struct {
	ID ID `msgpack:"id" json:"id"`
	// Addresses maps a transport name ("tcp", "uds", ...) to the address that
	// transport listens on, in the transport's own notation.
	Addresses map[string]string `msgpack:"addrs" json:"addresses"`
	// Service names the service the instance belongs to (see
	// velo.Builder.Service); empty for none.
	Service string `msgpack:"svc,omitempty" json:"service,omitempty"`
	// Handlers lists the user handlers the instance offers, sorted: the
	// names callers route by.
	Handlers []string `msgpack:"handlers,omitempty" json:"handlers,omitempty"`
}

// MaxServiceName is the longest service name, in bytes.
const MaxServiceName = 255

// Offers reports whether the instance lists the handler named name.
func (i Info) Offers(name string) bool {
	_, ok := slices.BinarySearch(i.Handlers, name)
	return ok
}

// Address returns the address for the named transport, if the instance has one.
func (i Info) Address(transport string) (string, bool) {
	a, ok := i.Addresses[transport]
	return a, ok && a != ""
}

// Clone returns a copy of i that shares no map with it.
func (i Info) Clone() Info {
	return Info{ID: i.ID, Addresses: maps.Clone(i.Addresses), Service: i.Service, Handlers: slices.Clone(i.Handlers)}
}

// Equal reports whether i and o say the same: id, addresses, service and
// handlers.
func (i Info) Equal(o Info) bool {
	return i.ID == o.ID && i.Service == o.Service && maps.Equal(i.Addresses, o.Addresses) && slices.Equal(i.Handlers, o.Handlers)
}

// Validate reports what makes i unusable as a peer registration.
func (i Info) Validate() error {
	if i.ID.IsZero() {
		return errors.New("peer: info has a zero instance id")
	}
	if len(i.Addresses) == 0 {
		return fmt.Errorf("peer: info for %s has no transport address", i.ID.Short())
	}
	if len(i.Service) > MaxServiceName {
		return fmt.Errorf("peer: info for %s has a service name of %d bytes, the most is %d", i.ID.Short(), len(i.Service), MaxServiceName)
	}
	if !slices.IsSorted(i.Handlers) {
		return fmt.Errorf("peer: info for %s lists its handlers out of order", i.ID.Short())
	}
	return nil
}

// String formats i for logs: the short ID and the transports in name order.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.ID.Short())
	if i.Service != "" {
		b.WriteByte('@')
		b.WriteString(i.Service)
	}
	b.WriteByte('{')
	for n, name := range slices.Sorted(maps.Keys(i.Addresses)) {
		if n > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(i.Addresses[name])
	}
	b.WriteByte('}')
	return b.String()
}
