package velo

import (
	"context"
	"reflect"
	"strings"
	"time"

	"github.com/velo-messenger/velo/internal/mpcheck"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// shape is what a handler takes and gives, recorded at registration for
// _describe: its kind, and for a typed handler its Go types.
type shape struct {
	kind    string
	in, out reflect.Type
}

// describe is the HandlerDesc of handler e.
func (e *handlerEntry) describe() system.HandlerDesc {
	d := system.HandlerDesc{Name: e.name, Kind: e.shape.kind}
	if e.shape.in != nil {
		d.Input = describeType(e.shape.in, nil)
		d.Output = describeType(e.shape.out, nil)
	}
	return d
}

var timeType = reflect.TypeFor[time.Time]()

// describeType describes t as MessagePack carries it (the field names are
// the keys msgpack writes). within lists the structs being described
// around t, so that a type that contains itself ends.
func describeType(t reflect.Type, within []reflect.Type) *system.TypeDesc {
	d := &system.TypeDesc{Type: t.String()}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		d.Kind = "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.Kind = "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.Kind = "uint"
	case reflect.Float32, reflect.Float64:
		d.Kind = "float"
	case reflect.String:
		d.Kind = "string"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			d.Kind = "bytes"
			break
		}
		d.Kind = "array"
		d.Elem = describeType(t.Elem(), within)
	case reflect.Map:
		d.Kind = "map"
		d.Key = describeType(t.Key(), within)
		d.Elem = describeType(t.Elem(), within)
	case reflect.Struct:
		if t == timeType {
			d.Kind = "time"
			break
		}
		d.Kind = "struct"
		for _, w := range within {
			if w == t {
				d.Recursive = true
				return d
			}
		}
		d.Fields = describeFields(t, append(within, t))
	default:
		d.Kind = "any"
	}
	return d
}

// describeFields lists the fields msgpack encodes for struct t, as its
// encoder names them: the `msgpack` tag's name, else the Go name; "-"
// and unexported fields are left out, untagged embedded structs inlined.
func describeFields(t reflect.Type, within []reflect.Type) []system.FieldDesc {
	var out []system.FieldDesc
	for f := range t.Fields() {
		tag := f.Tag.Get("msgpack")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != timeType {
				out = append(out, describeFields(ft, within)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, system.FieldDesc{
			Name:      name,
			Type:      describeType(f.Type, within),
			OmitEmpty: strings.Contains(","+opts+",", ",omitempty,"),
		})
	}
	return out
}

// answerDescribe is the _describe handler.
func (m *Messenger) answerDescribe(_ context.Context, c *Context) ([]byte, error) {
	var only string
	if len(c.Payload) > 0 {
		if err := mpcheck.Unmarshal(c.Payload, &only); err != nil {
			return nil, newError(CodeBadPayload, c.Handler, err, "want a handler's name: %v", err)
		}
	}
	hs := *m.handlers.Load()
	var out []system.HandlerDesc
	for _, name := range m.handlerNames() {
		if only != "" && name != only {
			continue
		}
		if e := hs[name]; e != nil {
			out = append(out, e.describe())
		}
	}
	if only != "" && len(out) == 0 {
		return nil, newError(CodeHandlerNotFound, only, nil, "no handler %q", only)
	}
	return system.EncodeDescs(out)
}

// Describe asks the instance id what its user handlers take and give:
// their kinds, and for typed handlers the field names and kinds of their
// input and output, as MessagePack carries them. It is what the velo
// command's describe prints.
func (m *Messenger) Describe(ctx context.Context, id peer.ID) ([]system.HandlerDesc, error) {
	b, err := m.Unary(system.Describe).Instance(id).Send(ctx)
	if err != nil {
		return nil, err
	}
	d, err := system.DecodeDescs(b)
	if err != nil {
		return nil, newError(CodeBadPayload, system.Describe, err, "decoding handler descriptions: %v", err)
	}
	return d, nil
}
