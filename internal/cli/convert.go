package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// jsonToMsgpack reads one JSON value and writes it as MessagePack, so
// that a typed handler decodes it: objects become maps with string keys
// (field names), integers stay integers, other numbers become floats.
func jsonToMsgpack(text []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("the payload is not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("the payload is not JSON: more than one value")
	}
	return msgpack.Marshal(numbers(v))
}

// numbers turns json.Numbers into int64, uint64 or float64.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		var u uint64
		if _, err := fmt.Sscan(x.String(), &u); err == nil {
			return u
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// msgpackToJSON decodes an answer generically and writes it as JSON. It
// reports false when b is not one whole MessagePack value (raw bytes,
// which the caller prints as they are).
func msgpackToJSON(b []byte, indent bool) ([]byte, bool) {
	if len(b) == 0 {
		return []byte("null"), true
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	v, err := dec.DecodeInterfaceLoose()
	if err != nil {
		return nil, false
	}
	if _, err := dec.PeekCode(); !errors.Is(err, io.EOF) {
		return nil, false // bytes after one value: not MessagePack
	}
	var out []byte
	if indent {
		out, err = json.MarshalIndent(jsonable(v), "", "  ")
	} else {
		out, err = json.Marshal(jsonable(v))
	}
	if err != nil {
		return nil, false
	}
	return out, true
}

// jsonable makes a generically decoded value encodable as JSON: map keys
// become strings, bytes become text when they are UTF-8 (else base64),
// and non-finite floats become strings.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case []any:
		for i := range x {
			x[i] = jsonable(x[i])
		}
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Sprint(x)
		}
	case float32:
		return jsonable(float64(x))
	}
	return v
}
