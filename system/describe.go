package system

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/internal/mpcheck"
)

// Describe answers the descriptions of the instance's user handlers, a
// MessagePack array of HandlerDesc sorted by name; with a payload (a
// MessagePack string, a handler's name) only that handler's, or
// handler_not_found.
const Describe = "_describe"

// Handler kinds, as HandlerDesc.Kind spells them.
const (
	KindAM    = "am"    // returns only an error (velo.AMHandler)
	KindUnary = "unary" // raw bytes in and out (velo.UnaryHandler)
	KindTyped = "typed" // MessagePack values in and out (velo.TypedUnaryHandler)
)

// HandlerDesc says what a handler takes and gives. Input and Output are
// set for typed handlers only: the others take and give bytes.
type HandlerDesc struct {
	Name   string    `msgpack:"name" json:"name"`
	Kind   string    `msgpack:"kind" json:"kind"`
	Input  *TypeDesc `msgpack:"in,omitempty" json:"input,omitempty"`
	Output *TypeDesc `msgpack:"out,omitempty" json:"output,omitempty"`
}

// TypeDesc describes a Go type as it travels in MessagePack. Kind is one
// of bool, int, uint, float, string, bytes, array, map, struct, any,
// time; Type is the Go type's name ("main.Order", "[]string").
type TypeDesc struct {
	Type   string      `msgpack:"type" json:"type"`
	Kind   string      `msgpack:"kind" json:"kind"`
	Fields []FieldDesc `msgpack:"fields,omitempty" json:"fields,omitempty"` // a struct's, in order
	Elem   *TypeDesc   `msgpack:"elem,omitempty" json:"elem,omitempty"`     // an array's or map's values
	Key    *TypeDesc   `msgpack:"key,omitempty" json:"key,omitempty"`       // a map's keys
	// Recursive is set where a struct contains itself: its fields were
	// described further up.
	Recursive bool `msgpack:"rec,omitempty" json:"recursive,omitempty"`
}

// FieldDesc is one field of a struct: Name is its MessagePack key.
type FieldDesc struct {
	Name      string    `msgpack:"name" json:"name"`
	Type      *TypeDesc `msgpack:"type" json:"type"`
	OmitEmpty bool      `msgpack:"omitempty,omitempty" json:"omitempty,omitempty"`
}

// Limits of a _describe answer that a caller decodes.
const (
	// MaxDescribeBytes bounds the answer a caller accepts.
	MaxDescribeBytes = 1 << 20
)

// EncodeDescs returns the payload of a _describe answer.
func EncodeDescs(d []HandlerDesc) ([]byte, error) { return msgpack.Marshal(d) }

// DecodeDescs reads the payload of a _describe answer.
func DecodeDescs(b []byte) ([]HandlerDesc, error) {
	if len(b) > MaxDescribeBytes {
		return nil, fmt.Errorf("a description of %d bytes, limit %d", len(b), MaxDescribeBytes)
	}
	var d []HandlerDesc
	if err := mpcheck.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	return d, nil
}
