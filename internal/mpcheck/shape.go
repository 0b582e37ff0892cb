package mpcheck

import (
	"encoding"
	"reflect"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/tagparser/v2"
)

// A shape is what msgpack/v5 does, as far as memory goes, when it decodes
// a value into one Go type. Shapes mirror the decoder's choices (its
// _getDecoder and getFields): which decoder a type gets, and which struct
// field a map key lands in. Where velo cannot know what happens (a type's
// own DecodeMsgpack, say) the shape says so, and the cost of the value is
// estimated from what its encoding holds.
type shape struct {
	kind kind
	size int64  // bytes of one value of the type: what a slice element or a pointer's target takes
	elem *shape // slice, array, pointer target, map value
	key  *shape // map key
	// fields maps a struct's map keys to its fields (with msgpack's
	// aliases and inlined embedded structs); list holds them in the order
	// an array-encoded struct lists them.
	fields map[string]*field
	list   []*field
}

type field struct {
	name  string
	shape *shape
	// alloc is what setting the field allocates on the way: the structs
	// behind nil embedded pointers that lead to an inlined field.
	alloc int64
}

type kind uint8

const (
	kindAny       kind = iota // interfaces: the value's own encoding decides
	kindScalar                // bool, numbers, time.Time: stored in place
	kindString                // string: the data is copied
	kindBytes                 // []byte: the data is copied
	kindByteArray             // [N]byte: the data is copied in place
	kindSlice                 // []T: len × size of T, then each element
	kindArray                 // [N]T: each element, in place
	kindPointer               // *T: a T unless nil
	kindMap                   // map[K]V
	kindStruct                // fields by name, or by position from an array
	kindText                  // encoding.TextUnmarshaler or BinaryUnmarshaler: the bytes are copied for the method
	kindCustom                // msgpack.CustomDecoder or Unmarshaler: the method decodes as it likes
	kindSkip                  // not decoded at all (an unknown struct field): validated, costs nothing
)

var (
	customDecoderType     = reflect.TypeFor[msgpack.CustomDecoder]()
	unmarshalerType       = reflect.TypeFor[msgpack.Unmarshaler]()
	binaryUnmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	textUnmarshalerType   = reflect.TypeFor[encoding.TextUnmarshaler]()
	customEncoderType     = reflect.TypeFor[msgpack.CustomEncoder]()
	marshalerType         = reflect.TypeFor[msgpack.Marshaler]()
	binaryMarshalerType   = reflect.TypeFor[encoding.BinaryMarshaler]()
	textMarshalerType     = reflect.TypeFor[encoding.TextMarshaler]()
	errorType             = reflect.TypeFor[error]()
	timeType              = reflect.TypeFor[time.Time]()
)

var (
	anyShape  = &shape{kind: kindAny, size: 16}
	skipShape = &shape{kind: kindSkip}
)

// shapes caches the shape of every type seen. Building one takes the lock,
// so that the shapes of a recursive type are made once and tied together.
var shapes struct {
	sync.Mutex
	m sync.Map // reflect.Type -> *shape
}

// shapeOf returns the shape of t.
func shapeOf(t reflect.Type) *shape {
	if s, ok := shapes.m.Load(t); ok {
		return s.(*shape)
	}
	shapes.Lock()
	defer shapes.Unlock()
	b := builder{seen: make(map[reflect.Type]*shape)}
	s := b.build(t)
	for t, s := range b.seen {
		shapes.m.LoadOrStore(t, s)
	}
	return s
}

type builder struct {
	seen     map[reflect.Type]*shape
	visiting map[reflect.Type]bool // structs whose fields are being listed
}

func (b *builder) build(t reflect.Type) *shape {
	if s, ok := shapes.m.Load(t); ok {
		return s.(*shape)
	}
	if s := b.seen[t]; s != nil {
		return s
	}
	s := &shape{size: int64(t.Size())}
	b.seen[t] = s // before the elements: a recursive type refers to itself
	if t.Kind() == reflect.Interface {
		s.kind = kindAny
		return s
	}
	if t == timeType { // msgpack registers a decoder of its own for it
		s.kind = kindScalar
		return s
	}
	if t.Kind() == reflect.Pointer {
		// msgpack sometimes decodes *T with T's decoder, sometimes with
		// the methods of *T; a pointer and then T costs at least as much
		// as either.
		s.kind, s.elem = kindPointer, b.build(t.Elem())
		return s
	}
	if k := methodKind(t); k != kindAny {
		s.kind = k
		return s
	}
	if k := methodKind(reflect.PointerTo(t)); k != kindAny { // methods on an addressable value
		s.kind = k
		return s
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		s.kind = kindScalar
	case reflect.String:
		s.kind = kindString
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			s.kind = kindBytes
		} else {
			s.kind, s.elem = kindSlice, b.build(t.Elem())
		}
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			s.kind = kindByteArray
		} else {
			s.kind, s.elem = kindArray, b.build(t.Elem())
		}
	case reflect.Map:
		s.kind, s.key, s.elem = kindMap, b.build(t.Key()), b.build(t.Elem())
	case reflect.Struct:
		s.kind = kindStruct
		fs := b.fieldsOf(t)
		s.fields, s.list = fs.byName, fs.list
	default:
		// Complex numbers, channels, functions, unsafe pointers: msgpack
		// refuses to decode them, but refuses nothing else first.
		s.kind = kindAny
	}
	return s
}

// methodKind says whether msgpack decodes a value of type t with one of
// its methods, in the order msgpack looks for them.
func methodKind(t reflect.Type) kind {
	switch {
	case t.Implements(customDecoderType), t.Implements(unmarshalerType):
		return kindCustom
	case t.Implements(binaryUnmarshalerType), t.Implements(textUnmarshalerType):
		return kindText
	}
	return kindAny
}

// hasEncoderMethods says whether msgpack encodes t with one of its
// methods, or as an error: then it does not inline an embedded t.
func hasEncoderMethods(t reflect.Type) bool {
	for _, t := range []reflect.Type{t, reflect.PointerTo(t)} {
		for _, i := range []reflect.Type{customEncoderType, marshalerType, binaryMarshalerType, textMarshalerType} {
			if t.Implements(i) {
				return true
			}
		}
	}
	return t == errorType
}

type fieldTable struct {
	byName map[string]*field
	list   []*field
}

func (fs *fieldTable) add(f *field) {
	fs.byName[f.name] = f
	fs.list = append(fs.list, f)
}

// fieldsOf lists the fields of struct t as msgpack's getFields does, for
// its default struct tag "msgpack": tag names, "-", unexported fields,
// aliases, and embedded structs that are inlined ("inline", or by default
// when none of their fields is shadowed and msgpack has no methods to
// call on them) unless tagged "noinline".
func (b *builder) fieldsOf(t reflect.Type) fieldTable {
	fs := fieldTable{byName: make(map[string]*field, t.NumField())}
	if b.visiting[t] {
		return fs // embedded in itself through a pointer: msgpack itself recurses forever
	}
	if b.visiting == nil {
		b.visiting = make(map[reflect.Type]bool)
	}
	b.visiting[t] = true
	defer delete(b.visiting, t)

	for i := range t.NumField() {
		sf := t.Field(i)
		tag := tagparser.Parse(sf.Tag.Get("msgpack"))
		if tag.Name == "-" {
			continue
		}
		if sf.PkgPath != "" && !sf.Anonymous {
			continue
		}
		f := &field{name: tag.Name}
		if f.name == "" {
			f.name = sf.Name
		}
		if tag.HasOption("intern") {
			f.shape = anyShape // decoded against the decoder's dictionary
		} else {
			f.shape = b.build(sf.Type)
		}
		if sf.Anonymous && !tag.HasOption("noinline") {
			inline := tag.HasOption("inline")
			if inline {
				if sf.Type.Kind() == reflect.Struct {
					for _, in := range b.fieldsOf(sf.Type).list {
						if _, shadowed := fs.byName[in.name]; !shadowed {
							fs.add(&field{name: in.name, shape: in.shape, alloc: in.alloc})
						}
					}
				}
			} else {
				inline = b.inlineByDefault(&fs, sf.Type)
			}
			if inline {
				fs.byName[f.name] = f
				continue
			}
		}
		fs.add(f)
		if alias, ok := tag.Options["alias"]; ok {
			fs.byName[alias] = f
		}
	}
	return fs
}

// inlineByDefault is msgpack's shouldInline: an embedded struct (or
// pointer to one) that msgpack encodes and decodes as a plain struct has
// its fields added to fs, unless one of them is shadowed. Fields behind an
// embedded pointer cost the struct it points to, allocated when the first
// of them is set.
func (b *builder) inlineByDefault(fs *fieldTable, t reflect.Type) bool {
	var alloc int64
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		alloc += int64(t.Size())
	}
	if t.Kind() != reflect.Struct || t == timeType || hasEncoderMethods(t) ||
		methodKind(t) != kindAny || methodKind(reflect.PointerTo(t)) != kindAny {
		return false
	}
	inner := b.fieldsOf(t).list
	for _, in := range inner {
		if _, shadowed := fs.byName[in.name]; shadowed {
			return false
		}
	}
	for _, in := range inner {
		fs.add(&field{name: in.name, shape: in.shape, alloc: alloc + in.alloc})
	}
	return true
}
