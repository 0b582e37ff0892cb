package velo

import (
	"reflect"
	"slices"
	"testing"

	"github.com/velo-messenger/velo/system"
)

type describeTree struct {
	Name     string            `msgpack:"name"`
	Children []*describeTree   `msgpack:"kids,omitempty"`
	Labels   map[string]int    `msgpack:"labels"`
	Blob     []byte            `msgpack:"blob"`
	Skip     string            `msgpack:"-"`
	hidden   int               // left out: unexported
	Any      any               `msgpack:"any"`
	Nested   struct{ In bool } `msgpack:"nested"`
	describeEmbedded
}

type describeEmbedded struct{ Flat uint16 }

// TestDescribeTypes: the description follows msgpack's names (tags,
// "-", unexported, inlined embedded structs) and ends on a recursive type.
func TestDescribeTypes(t *testing.T) {
	_ = describeTree{}.hidden
	d := describeType(reflect.TypeFor[describeTree](), nil)
	var names []string
	kinds := map[string]*system.TypeDesc{}
	for _, f := range d.Fields {
		names = append(names, f.Name)
		kinds[f.Name] = f.Type
	}
	if got, want := names, []string{"name", "kids", "labels", "blob", "any", "nested", "Flat"}; !slices.Equal(got, want) {
		t.Fatalf("fields %q, want %q", got, want)
	}
	if k := kinds["kids"]; k.Kind != "array" || !k.Elem.Recursive || k.Elem.Kind != "struct" {
		t.Fatalf("kids: %+v, want an array of the type itself, marked recursive", k)
	}
	if k := kinds["labels"]; k.Kind != "map" || k.Key.Kind != "string" || k.Elem.Kind != "int" {
		t.Fatalf("labels: %+v", k)
	}
	for name, kind := range map[string]string{"blob": "bytes", "any": "any", "nested": "struct", "Flat": "uint"} {
		if kinds[name].Kind != kind {
			t.Errorf("%s is %s, want %s", name, kinds[name].Kind, kind)
		}
	}
	if d.Fields[1].OmitEmpty != true || d.Fields[0].OmitEmpty {
		t.Error("omitempty not read from the tag")
	}
}
